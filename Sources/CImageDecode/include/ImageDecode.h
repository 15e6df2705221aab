// A setjmp/longjmp shim around libjpeg: libjpeg reports fatal errors through an error_exit hook
// that must not return, which Swift cannot express, so the jump lives here in C.
#ifndef ACON_IMAGE_DECODE_H
#define ACON_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Decodes a JPEG held in memory to 8-bit interleaved RGB (grayscale is replicated, CMYK/YCCK is
/// converted as Photoshop-style inverted CMYK when an Adobe marker is present). On success returns
/// 0 and sets *pixels (free with acon_image_free), *width and *height. On failure returns -1 and
/// writes libjpeg's message into message (message_size bytes, NUL-terminated).
int acon_jpeg_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *width, int *height,
                     char *message, size_t message_size);

/// Encodes 8-bit interleaved pixels with `components` channels (1 gray, 3 RGB, 4 CMYK) as a JPEG
/// in memory. Returns 0 and sets *out (free with acon_image_free) and *out_size, or -1 with a
/// message. Used by tests and tools that write small JPEG files.
int acon_jpeg_encode(const uint8_t *pixels, int width, int height, int components, int quality,
                     uint8_t **out, size_t *out_size, char *message, size_t message_size);

/// Frees a buffer returned by the functions above.
void acon_image_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
