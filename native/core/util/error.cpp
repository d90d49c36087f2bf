#include "util/error.h"

#include <c10/util/Exception.h>
#include <opencv2/core.hpp>

namespace y26 {

std::string describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& err) {
    std::string msg = err.what_without_backtrace();
    auto nl = msg.find("\nException raised from");
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    return "libtorch: " + msg;
  } catch (const cv::Exception& err) {
    return "OpenCV: " + err.msg + " (in " + err.func + ")";
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& err) {
    return err.what();
  } catch (...) {
    return "unknown native error";
  }
}

}  // namespace y26
