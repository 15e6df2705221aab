// libpng 1.6, for decoding PNG images through its simplified API (Debian: libpng-dev).
#include <png.h>
