#include "ImageDecode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

// PIL's decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS), beyond which it refuses an image.
#define ACON_MAX_IMAGE_PIXELS ((size_t)178956970)

// An error manager that jumps back to the caller instead of calling exit().
struct acon_error_mgr {
  struct jpeg_error_mgr base;
  jmp_buf jump;
  char *message;
  size_t message_size;
};

static void acon_error_exit(j_common_ptr cinfo) {
  struct acon_error_mgr *err = (struct acon_error_mgr *)cinfo->err;
  if (err->message && err->message_size > 0) {
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(err->message, err->message_size, "%s", buffer);
  }
  longjmp(err->jump, 1);
}

// Warnings about corrupt data that libjpeg recovers from are silenced, as PIL ignores them. Data
// that ends before the image does is an error, as in PIL ("image file is truncated"): libjpeg
// would otherwise fill the rest with gray, and a few hundred bytes claiming a huge image would
// cost seconds of decoding.
static void acon_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) (*cinfo->err->error_exit)(cinfo);
}

static void acon_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void set_message(char *message, size_t size, const char *text) {
  if (message && size > 0) snprintf(message, size, "%s", text);
}

// libjpeg's error manager, wired to report through `message` and jump back to the caller's setjmp.
static struct jpeg_error_mgr *acon_error_mgr_init(struct acon_error_mgr *err, char *message,
                                                  size_t message_size) {
  struct jpeg_error_mgr *base = jpeg_std_error(&err->base);
  err->base.error_exit = acon_error_exit;
  err->base.output_message = acon_output_message;
  err->base.emit_message = acon_emit_message;
  err->message = message;
  err->message_size = message_size;
  return base;
}

int acon_jpeg_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *width, int *height,
                     char *message, size_t message_size) {
  struct jpeg_decompress_struct cinfo;
  struct acon_error_mgr err;
  // Volatile: these change between setjmp and a possible longjmp.
  uint8_t *volatile out = NULL;
  JSAMPLE *volatile row = NULL;
  *pixels = NULL;
  if (size == 0) {
    set_message(message, message_size, "empty file");
    return -1;
  }
  cinfo.err = acon_error_mgr_init(&err, message, message_size);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(out);
    free(row);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, (unsigned char *)data, (unsigned long)size);
  jpeg_read_header(&cinfo, TRUE);
  // Refused before jpeg_start_decompress, which for a progressive file allocates the whole
  // image's coefficients and reads every scan.
  if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
      (size_t)cinfo.image_width * (size_t)cinfo.image_height > ACON_MAX_IMAGE_PIXELS) {
    snprintf(message, message_size, "image size %ux%u is beyond %zu pixels",
             (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, ACON_MAX_IMAGE_PIXELS);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = cmyk ? JCS_CMYK : (gray ? JCS_GRAYSCALE : JCS_RGB);
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
  int comps = cinfo.output_components;
  if (w <= 0 || h <= 0 || (size_t)w * (size_t)h > ACON_MAX_IMAGE_PIXELS) {
    set_message(message, message_size, "unsupported image size");
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  out = (uint8_t *)malloc((size_t)w * h * 3);
  row = (JSAMPLE *)malloc((size_t)w * comps);
  if (!out || !row) {
    set_message(message, message_size, "out of memory");
    jpeg_destroy_decompress(&cinfo);
    free(out);
    free(row);
    return -1;
  }
  int inverted = cmyk && cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    int y = (int)cinfo.output_scanline;
    JSAMPROW rows[1] = {row};
    jpeg_read_scanlines(&cinfo, rows, 1);
    uint8_t *dst = out + (size_t)y * w * 3;
    if (comps == 3) {
      memcpy(dst, row, (size_t)w * 3);
    } else if (comps == 1) {
      for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
    } else {
      // CMYK to RGB: r = (255 - c)(255 - k) / 255, on stored values inverted when Adobe wrote them.
      for (int x = 0; x < w; x++) {
        int k = row[4 * x + 3];
        if (!inverted) k = 255 - k;
        for (int c = 0; c < 3; c++) {
          int v = row[4 * x + c];
          if (!inverted) v = 255 - v;
          dst[3 * x + c] = (uint8_t)((v * k + 127) / 255);
        }
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(row);
  *pixels = out;
  *width = w;
  *height = h;
  return 0;
}

int acon_jpeg_encode(const uint8_t *pixels, int width, int height, int components, int quality,
                     uint8_t **out, size_t *out_size, char *message, size_t message_size) {
  struct jpeg_compress_struct cinfo;
  struct acon_error_mgr err;
  // Address-taken, so they live in memory and keep their values across the longjmp.
  unsigned char *mem = NULL;
  unsigned long mem_size = 0;
  *out = NULL;
  *out_size = 0;
  if (components != 1 && components != 3 && components != 4) {
    set_message(message, message_size, "components must be 1, 3 or 4");
    return -1;
  }
  cinfo.err = acon_error_mgr_init(&err, message, message_size);
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    free(mem);
    return -1;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &mem, &mem_size);
  cinfo.image_width = (JDIMENSION)width;
  cinfo.image_height = (JDIMENSION)height;
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : (components == 3 ? JCS_RGB : JCS_CMYK);
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW rows[1] = {(JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * components)};
    jpeg_write_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  *out = (uint8_t *)mem;
  *out_size = (size_t)mem_size;
  return 0;
}

void acon_image_free(void *p) { free(p); }
