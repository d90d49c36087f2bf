// The model's task as an enum: the one place that maps the task names of YAML files, checkpoints, ONNX metadata
// and options ("detect", "segment", "pose", "obb", "classify") to the values the code switches on.
#pragma once
#include <string>

namespace y26 {

enum class Task { Detect, Pose, Obb, Segment, Classify };

// Throws y26::Error naming the accepted tasks for any other name.
Task parse_task(const std::string& name);
std::string task_name(Task t);

}  // namespace y26
