// Metrics in the Prometheus text exposition format (version 0.0.4): status --prometheus prints them, run --metrics
// serves them at /metrics (loader/app/http.hpp).
#pragma once

#include <string>
#include <vector>

#include "loader/app/list.hpp"
#include "loader/app/status.hpp"

namespace sockredir::app {

// What the pins of `pin_dir` say, as metrics: the attachment, sockets in the map, every counter, connections and
// directions by path and reason, the programs' run cost when the kernel measures it, and the build.
std::string prometheus_metrics(const std::string& pin_dir);

// The same from what was read already: the status and the connections of list_connections.
std::string format_prometheus(const Status& s, const std::vector<Connection>& connections);

} // namespace sockredir::app
