#include "CPlatform.h"

#include <pthread.h>
#include <signal.h>

_Static_assert(sizeof(acon_signal_mask) >= sizeof(sigset_t), "acon_signal_mask must hold a sigset_t");

static _Thread_local int shielded;

/// Every signal but the ones a fault raises on the faulting thread itself: blocking those
/// would turn a crash report into a silent kill.
static void asynchronous_signals(sigset_t *set) {
  sigfillset(set);
  sigdelset(set, SIGSEGV);
  sigdelset(set, SIGBUS);
  sigdelset(set, SIGFPE);
  sigdelset(set, SIGILL);
  sigdelset(set, SIGTRAP);
  sigdelset(set, SIGSYS);
  sigdelset(set, SIGABRT);
}

void acon_shield_thread_from_signals(void) {
  sigset_t set;
  asynchronous_signals(&set);
  if (pthread_sigmask(SIG_BLOCK, &set, NULL) == 0) shielded = 1;
}

int acon_thread_is_shielded_from_signals(void) { return shielded; }

void acon_hold_signals(acon_signal_mask *saved) {
  sigset_t set;
  asynchronous_signals(&set);
  pthread_sigmask(SIG_BLOCK, &set, (sigset_t *)saved);
}

void acon_release_signals(const acon_signal_mask *saved) {
  pthread_sigmask(SIG_SETMASK, (const sigset_t *)saved, NULL);
}
