// libjpeg (libjpeg-turbo), for decoding JPEG images (Debian: libjpeg-dev).
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
