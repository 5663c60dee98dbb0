// `run`, the foreground daemon: attach, wait for SIGTERM or SIGINT, then detach what it attached or adopted.
#pragma once

#include <string>

#include "loader/app/attach.hpp"

namespace sockredir::app {

// Attaches (behind check's verdict, as attach does), says so on stdout, waits for SIGTERM or SIGINT and detaches.
// The stop signals are blocked before attach, so one that arrives during attach is taken right after it, and never
// interrupts a half-done attach.
//
// Found attached to the same cgroup already (a run that was killed, or an operator's attach), it adopts the
// attachment and detaches it when it stops; a live `run` on the same pin dir holds a lock on it, and a second one
// is refused. At the stop it detaches only the attachment it attached or adopted (same link id), and leaves one
// that replaced it alone. Returns once stopped; throws base::Error on a failure.
//
// `metrics_address` (HOST:PORT, http.hpp), when not empty: serves status --prometheus's metrics at /metrics there
// while it runs, bound before the attach (an address that cannot be bound fails the run with nothing attached).
void run_foreground(const AttachOptions& options, const DetachOptions& detach_options = {},
                    const std::string& metrics_address = {});

} // namespace sockredir::app
