// oneDNN's C API (Debian: libdnnl-dev). Its sgemm picks AVX-512, AVX2 or SSE kernels at run
// time from the CPU it runs on.
#include <dnnl.h>

// The OpenMP runtime Debian's oneDNN is built with (libgomp). Declared here rather than through
// <omp.h>, which sits in GCC's private include folder that clang does not search.
void omp_set_num_threads(int num_threads);
