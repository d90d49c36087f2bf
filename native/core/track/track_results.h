// Tracking applied to prediction results, frame by frame, as upstream's on_predict_postprocess_end: the tracker
// sees each frame's boxes (OBB: rotated boxes), and the result keeps only the tracked objects, in the tracker's
// order, with the filtered boxes, an id each, and the keypoints / masks of the detections they matched.
#pragma once
#include <opencv2/core.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "infer/pipeline.h"
#include "infer/postprocess.h"
#include "track/tracker.h"

namespace y26 {

// The detections of one result as tracker input (OBB results give rotated boxes).
std::vector<TrackInput> track_inputs(const Result& r);

// Runs one frame through the tracker and rewrites r. A frame where no track is confirmed keeps its detections and
// no ids (r.ids undefined), as upstream.
void track_result(Tracker& tracker, Result& r, const cv::Mat& image);

// A tracker shared by the streams that use it (persist), one frame at a time. `mu` guards the tracks and
// `motion_mu` the camera-motion estimator, so that a frame's motion estimate may run while another frame is tracked.
struct SharedTracker {
  explicit SharedTracker(TrackerConfig cfg) : tracker(std::move(cfg)) {}
  std::mutex mu, motion_mu;
  Tracker tracker;
  // Frames any stream has put through the tracks or the motion estimator: a stream taking back a failed batch
  // does so only when no other stream changed the tracker meanwhile (it would undo their frames).
  std::atomic<uint64_t> changes{0};
};

// Tracking for a pipeline: sets po.on_batch and po.on_result. Without persist the tracker starts over at every new
// video or image path (and so on the first frame of this stream), as upstream; with persist it keeps its tracks
// across paths and across streams. With overlap_motion, BoT-SORT's camera-motion estimate of each batch runs on one
// extra thread during the batch's forward pass and is joined when the association needs it; without, it runs
// inline before the association. The results are the same (the same estimator sees the same frames in order).
// It also sets po.on_batch_failed: a batch whose forward pass (or a later step) fails is taken back, so the tracker
// goes on as if the stream had not held those frames (tracks, frame count, the estimator's previous frame).
void attach_tracking(PipelineOptions& po, std::shared_ptr<SharedTracker> tracker, bool persist, bool overlap_motion = true);

}  // namespace y26
