#include "CPlatform.h"

#include <pthread.h>
#include <signal.h>

_Static_assert(sizeof(acon_signal_mask) >= sizeof(sigset_t), "acon_signal_mask must hold a sigset_t");

static _Thread_local int shielded;

/// Every signal but the ones a fault raises on the faulting thread itself: blocking those
/// would turn a crash report into a silent kill. Built once, before `main`: every held product
/// reads it.
static sigset_t asynchronous;

__attribute__((constructor)) static void build_asynchronous_set(void) {
  sigfillset(&asynchronous);
  sigdelset(&asynchronous, SIGSEGV);
  sigdelset(&asynchronous, SIGBUS);
  sigdelset(&asynchronous, SIGFPE);
  sigdelset(&asynchronous, SIGILL);
  sigdelset(&asynchronous, SIGTRAP);
  sigdelset(&asynchronous, SIGSYS);
  sigdelset(&asynchronous, SIGABRT);
}

void acon_shield_thread_from_signals(void) {
  if (pthread_sigmask(SIG_BLOCK, &asynchronous, NULL) == 0) shielded = 1;
}

int acon_thread_is_shielded_from_signals(void) { return shielded; }

void acon_hold_signals(acon_signal_mask *saved) {
  pthread_sigmask(SIG_BLOCK, &asynchronous, (sigset_t *)saved);
}

void acon_release_signals(const acon_signal_mask *saved) {
  pthread_sigmask(SIG_SETMASK, (const sigset_t *)saved, NULL);
}
