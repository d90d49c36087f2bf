#include "util/timestamp.h"

#include <cstdio>
#include <ctime>

namespace y26 {

std::string iso_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  // floor, not truncation toward zero, so times before 1970 keep a non-negative microsecond part
  const auto secs = time_point_cast<seconds>(t);
  const auto s = secs > t ? secs - seconds(1) : secs;
  const long long us = duration_cast<microseconds>(t - s).count();
  const std::time_t tt = system_clock::to_time_t(s);
  std::tm tm{};
  gmtime_r(&tt, &tm);  // UTC: a timestamp must not depend on the machine's time zone
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lld+00:00", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
  return buf;
}

std::string iso_now() { return iso_time(std::chrono::system_clock::now()); }

}  // namespace y26
