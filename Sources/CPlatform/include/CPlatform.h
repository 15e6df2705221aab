#ifndef ACON_CPLATFORM_H
#define ACON_CPLATFORM_H

/// One spin-wait hint to the processor (`pause` on x86-64, `yield` on arm64): a waiting thread
/// spins politely, leaving the core's shared resources to a sibling hyper-thread.
static inline void acon_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
