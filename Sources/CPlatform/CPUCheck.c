// The start-up check that the running CPU has the instruction set the Swift kernels were
// compiled for (Package.swift chooses it on the building machine and passes its level here).
// This file itself is compiled for the architecture's baseline, and runs as a constructor,
// before `main` and before any Swift code: a binary copied to an older CPU says what it needs
// and exits, instead of dying on the first AVX instruction with SIGILL.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef ACON_REQUIRED_X86_LEVEL
#define ACON_REQUIRED_X86_LEVEL 0
#endif

#if defined(__x86_64__) && ACON_REQUIRED_X86_LEVEL >= 3
#if ACON_REQUIRED_X86_LEVEL >= 4
#define ACON_COMPILED_FOR "AVX-512 (F, CD, BW, DQ, VL) with AVX2 and FMA (x86-64-v4)"
#else
#define ACON_COMPILED_FOR "AVX2, FMA and BMI2 (x86-64-v3)"
#endif

static void acon_refuse(const char *missing) {
  fprintf(stderr,
          "error: this build of ACON was compiled for CPUs with " ACON_COMPILED_FOR
          " (chosen on the machine that built it), and this CPU lacks %s. Rebuild on this "
          "machine, or build with ACON_TARGET_CPU=generic for a binary that runs on any x86-64 "
          "CPU.\n",
          missing);
  _exit(70);  // EX_SOFTWARE: the binary does not fit the machine.
}

__attribute__((constructor)) static void acon_check_instruction_set(void) {
  __builtin_cpu_init();
  // __builtin_cpu_supports takes a string literal, hence one line per feature.
  if (!__builtin_cpu_supports("avx2")) acon_refuse("AVX2");
  if (!__builtin_cpu_supports("fma")) acon_refuse("FMA");
  if (!__builtin_cpu_supports("bmi2")) acon_refuse("BMI2");
#if ACON_REQUIRED_X86_LEVEL >= 4
  if (!__builtin_cpu_supports("avx512f")) acon_refuse("AVX-512F");
  if (!__builtin_cpu_supports("avx512cd")) acon_refuse("AVX-512CD");
  if (!__builtin_cpu_supports("avx512bw")) acon_refuse("AVX-512BW");
  if (!__builtin_cpu_supports("avx512dq")) acon_refuse("AVX-512DQ");
  if (!__builtin_cpu_supports("avx512vl")) acon_refuse("AVX-512VL");
#endif
}
#endif

/// The x86-64 feature level the kernels were compiled for (0 baseline, 3 AVX2, 4 AVX-512).
int acon_required_x86_level(void) { return ACON_REQUIRED_X86_LEVEL; }
