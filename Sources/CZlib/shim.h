// zlib, for gzip-compressed data files (Debian: zlib1g-dev).
#include <zlib.h>
