// JSON forms of the API's resources (DESIGN.md section 3): activities in and
// out, draws, audit entries, the fairness document.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fairdraw/engine/activity.hpp"
#include "fairdraw/engine/store.hpp"
#include "fairdraw/result.hpp"
#include "fairdraw/sink/records.hpp"

namespace fairdraw::app {

// The admin API's activity body. Read-only fields a client may echo back from
// GET (id, status, epoch_size, prizes[].remaining) are accepted and ignored;
// any other unknown field is refused, naming it.
Result<ActivityConfig> parse_activity(const nlohmann::json& body);
nlohmann::json activity_config_json(const ActivityConfig& config);
nlohmann::json activity_view_json(const ActivityView& view);

// The draw response body (also GET /draws/{id} and the user's list, plus candidate_id there).
nlohmann::json draw_json(const DrawRecord& record, bool with_candidate = false);
std::string draw_body(const DrawRecord& record);
nlohmann::json audit_json(const DrawRecord& record);
nlohmann::json fairness_json(const std::string& activity_id, const std::vector<EpochView>& epochs);

}  // namespace fairdraw::app
