#include "model/task.h"

#include "util/error.h"

namespace y26 {

Task parse_task(const std::string& name) {
  if (name == "detect") return Task::Detect;
  if (name == "pose") return Task::Pose;
  if (name == "obb") return Task::Obb;
  if (name == "segment") return Task::Segment;
  if (name == "classify") return Task::Classify;
  fail("unknown task '" + name + "': use detect, pose, obb, segment or classify");
}

std::string task_name(Task t) {
  switch (t) {
    case Task::Detect: return "detect";
    case Task::Pose: return "pose";
    case Task::Obb: return "obb";
    case Task::Segment: return "segment";
    case Task::Classify: return "classify";
  }
  fail("task_name: not a Task value (" + std::to_string(static_cast<int>(t)) + ")");
}

}  // namespace y26
