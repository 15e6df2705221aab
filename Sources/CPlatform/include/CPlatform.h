#ifndef ACON_CPLATFORM_H
#define ACON_CPLATFORM_H

#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#endif
#include <unistd.h>

/// Processors this process may run on: its CPU affinity mask where the system has one (a
/// container's `--cpuset-cpus`, `taskset`), else the online processors.
static inline int acon_available_processors(void) {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
#endif
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? (int)online : 1;
}

/// One spin-wait hint to the processor (`pause` on x86-64, `yield` on arm64): a waiting thread
/// spins politely, leaving the core's shared resources to a sibling hyper-thread.
static inline void acon_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/// The x86-64 feature level the Swift kernels were compiled for: 0 the baseline, 3 AVX2 + FMA,
/// 4 AVX-512 (chosen by Package.swift; checked against the CPU at start-up, CPUCheck.c).
int acon_required_x86_level(void);

/// A thread's saved signal mask: room for glibc's `sigset_t` (128 bytes), which Swift cannot
/// hold as a stored value portably.
typedef struct {
  unsigned long words[16];
} acon_signal_mask;

/// Blocks every asynchronous signal on the calling thread for the rest of its life (a compute
/// thread that never needs one); faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
/// SIGABRT) stay unblocked. Signals sent to the process go to its other threads instead.
void acon_shield_thread_from_signals(void);

/// Whether the calling thread ran `acon_shield_thread_from_signals`.
int acon_thread_is_shielded_from_signals(void);

/// Blocks every asynchronous signal on the calling thread until `acon_release_signals`, saving
/// the mask it had; a signal arriving meanwhile stays pending and is handled at the release.
void acon_hold_signals(acon_signal_mask *saved);

/// Restores the mask `acon_hold_signals` saved.
void acon_release_signals(const acon_signal_mask *saved);

#endif
