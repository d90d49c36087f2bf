// Writing predict() outputs to disk the official way: runs/<task>/predict{,2,3,...}/ with annotated images or
// videos, labels/*.txt (save_txt; classify: the top-5 "conf name" lines) and crops/<class>/*.jpg (save_crop).
#pragma once
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <map>
#include <string>
#include <vector>

#include "infer/annotate.h"
#include "infer/postprocess.h"

namespace y26 {

// path, or path2, path3, ... (for files: stem2.ext) when it exists and exist_ok is false; creates the
// directory when mkdir is true.
std::string increment_path(const std::string& path, bool exist_ok = false, bool mkdir = false);

// YOLO label lines for one result: "cls xc yc w h" normalised by the original size, then pose keypoints
// (x y [v], normalised); segment: "cls" and the mask outline's points, OBB: "cls" and the four corners, both
// normalised; then conf when save_conf, then the track id when tracked. Numbers in %g like the official writer.
std::string format_yolo_txt(const Result& r, bool save_conf);

// A crop of the box grown by gain and pad (official save_one_box: 1.02x + 10 px), clipped to the image.
cv::Mat crop_box(const cv::Mat& image, const float xyxy[4], double gain = 1.02, int pad = 10);

struct SaveOptions {
  std::string project = "runs";  // results go to <project>/<task>/<name>
  std::string name = "predict";
  bool exist_ok = false;         // reuse <name> instead of incrementing to <name>2, <name>3, ...
  bool save = true;              // annotated images (and videos, mp4v)
  bool save_txt = false;
  bool save_conf = false;
  bool save_crop = false;
  Task task = Task::Detect;
  std::vector<std::string> names;  // class names for labels and crop folders
  AnnotateOptions annotate;
};

class ResultSaver {
 public:
  explicit ResultSaver(SaveOptions opt);  // picks and creates the save directory
  ~ResultSaver();
  const std::string& save_dir() const { return save_dir_; }
  // Writes whatever the options ask for; needs r.orig_image for images, videos and crops. Error items are ignored.
  // Returns the path of the annotated image or video written ("" when none).
  std::string save(const Result& r);
  void close();  // finishes open videos

 private:
  std::string stem_for(const Result& r) const;
  SaveOptions opt_;
  std::string save_dir_;
  std::map<std::string, cv::VideoWriter> videos_;
  std::map<std::string, TrackTrails> trails_;  // by video stem ("" for images)
};

}  // namespace y26
