// Tracking applied to prediction results, frame by frame, as upstream's on_predict_postprocess_end: the tracker
// sees each frame's boxes (OBB: rotated boxes), and the result keeps only the tracked objects, in the tracker's
// order, with the filtered boxes, an id each, and the keypoints / masks of the detections they matched.
#pragma once
#include <opencv2/core.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "infer/postprocess.h"
#include "track/tracker.h"

namespace y26 {

// The detections of one result as tracker input (OBB results give rotated boxes).
std::vector<TrackInput> track_inputs(const Result& r);

// Runs one frame through the tracker and rewrites r. A frame where no track is confirmed keeps its detections and
// no ids (r.ids undefined), as upstream.
void track_result(Tracker& tracker, Result& r, const cv::Mat& image);

// A tracker shared by the streams that use it (persist), one frame at a time.
struct SharedTracker {
  explicit SharedTracker(TrackerConfig cfg) : tracker(std::move(cfg)) {}
  std::mutex mu;
  Tracker tracker;
};

// The per-result step for the pipeline (PipelineOptions::on_result). Without persist the tracker starts over at
// every new video or image path (and so on the first frame of this stream), as upstream; with persist it keeps
// its tracks across paths and across streams.
std::function<void(Result&, const cv::Mat&)> tracking_step(std::shared_ptr<SharedTracker> tracker, bool persist);

}  // namespace y26
