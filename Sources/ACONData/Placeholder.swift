// The ACONData layer; see README.md for its place in the package.
