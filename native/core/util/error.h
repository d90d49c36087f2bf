// One exception type for the engine: what went wrong, on which file, and how to fix it.
#pragma once
#include <stdexcept>
#include <string>

namespace y26 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws y26::Error with the message; use for user-facing failures (bad file, bad option).
[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace y26

#include <exception>
namespace y26 {
// A one-line, user-facing message for any exception the engine can raise: libtorch's c10::Error
// without its C++ backtrace, OpenCV's cv::Exception, y26::Error and the standard ones.
std::string describe_exception(std::exception_ptr e);
}  // namespace y26
