// Multi-object trackers over per-frame detections, as upstream's `mode=track`: ByteTrack (Kalman filter in
// xyah, two-stage association of high- then low-score detections, lost tracks kept for track_buffer frames) and
// BoT-SORT (the same association with a Kalman filter in xywh and camera-motion compensation). Ids start at 1
// per tracker and never repeat until reset().
#pragma once
#include <opencv2/core.hpp>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "track/gmc.h"
#include "track/kalman.h"

namespace y26 {

// The official tracker YAML keys and their defaults (botsort.yaml; bytetrack.yaml has the first seven).
struct TrackerConfig {
  std::string tracker_type = "bytetrack";  // bytetrack | botsort
  double track_high_thresh = 0.25;  // first association takes detections with score >= this
  double track_low_thresh = 0.1;    // second association takes the ones in (low, high)
  double new_track_thresh = 0.25;   // unmatched detections start a track at or above this
  int track_buffer = 30;            // frames a lost track is kept for re-identification
  double match_thresh = 0.8;        // first-association cost limit (1 - IoU, score-fused)
  bool fuse_score = true;           // multiply IoU by the detection score before matching
  std::string gmc_method = "sparseOptFlow";  // botsort: camera-motion compensation (sparseOptFlow | none)
  double proximity_thresh = 0.5;    // botsort ReID gating (ReID itself is not supported: with_reid must be false)
  double appearance_thresh = 0.8;
  bool with_reid = false;
  std::string model = "auto";       // botsort ReID model (unused without ReID)
};

// Reads a tracker YAML (the official keys); unknown keys, bad values and unsupported features fail naming the file.
TrackerConfig load_tracker_config(const std::string& path);
// Checks the values (thresholds in [0,1], buffer >= 0, known type and GMC method); `where` names the source.
void validate_tracker_config(const TrackerConfig& c, const std::string& where);

// One detection fed to the tracker: centre, size, optional angle (OBB), score, class, index in the frame.
struct TrackInput {
  double cx = 0, cy = 0, w = 0, h = 0, angle = 0;
  bool rotated = false;
  double score = 0;
  int64_t cls = 0;
  int idx = 0;
};

// One confirmed track in the current frame: the filtered box (xyxy, or cx,cy,w,h,angle when rotated), its id, and
// the score, class and index of the detection it matched this frame.
struct TrackOutput {
  std::array<double, 5> box{};
  bool rotated = false;
  int64_t id = 0;
  double score = 0;
  int64_t cls = 0;
  int idx = 0;
};

class Tracker {
 public:
  explicit Tracker(TrackerConfig cfg);
  ~Tracker();
  const TrackerConfig& config() const { return cfg_; }
  // Advances one frame. `image` (BGR) feeds camera-motion compensation (BoT-SORT); it may be empty.
  // Same as update_warped(dets, estimate_motion(image)).
  std::vector<TrackOutput> update(const std::vector<TrackInput>& dets, const cv::Mat& image = cv::Mat());

  // The two halves of update(), so that the motion estimate, which needs only the image, can run on another thread
  // while the model runs. They touch disjoint state: one call of each may run at the same time.
  // estimate_motion: the warp from the previous image to this one (BoT-SORT with GMC); empty when the tracker has
  // no GMC or the image is empty (the estimator then keeps its previous image).
  cv::Mat estimate_motion(const cv::Mat& image);
  bool uses_motion() const { return gmc_.enabled(); }
  // update_warped: one frame of detections; a non-empty warp moves the predicted tracks first.
  std::vector<TrackOutput> update_warped(const std::vector<TrackInput>& dets, const cv::Mat& warp);

  void reset();  // forgets every track and restarts ids at 1 (reset_tracks() and reset_motion())
  void reset_tracks();
  void reset_motion() { gmc_.reset(); }
  int frame_id() const { return frame_id_; }

  struct Track;  // tracker.cpp

  // Saved state, to take back frames whose results were lost (a batch whose forward pass failed): the tracks with
  // their Kalman states, frame count and next id (update_warped's state), and the motion estimator's previous frame
  // (estimate_motion's). Deep copies: the tracker changes its tracks in place.
  struct SavedTracks {
    std::vector<std::shared_ptr<Track>> tracked, lost;
    int frame_id = 0;
    int64_t next_id = 0;
  };
  SavedTracks save_tracks() const;
  void restore_tracks(SavedTracks s);
  CameraMotion::Saved save_motion() const { return gmc_.save(); }
  void restore_motion(CameraMotion::Saved s) { gmc_.restore(std::move(s)); }

 private:
  TrackerConfig cfg_;
  KalmanBoxFilter kf_;
  CameraMotion gmc_;
  int frame_id_ = 0;
  int64_t next_id_ = 0;
  std::vector<std::shared_ptr<Track>> tracked_, lost_;
};

}  // namespace y26
