// Names the calling thread, so that top -H, perf, gdb and /proc/PID/task/*/comm
// tell the io threads from the writers (Linux shows at most 15 characters).
#pragma once

#include <pthread.h>

namespace fairdraw {

inline void name_this_thread(const char* name) noexcept {
  // Best effort: a name that is too long is refused (ERANGE) and the thread
  // keeps its inherited one, which is harmless.
  pthread_setname_np(pthread_self(), name);
}

}  // namespace fairdraw
