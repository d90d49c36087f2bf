// Generated scenes of moving shapes with known identities, for tracking tests and benchmarks: objects move at
// constant velocity over a textured background, may cross, hide for some frames, enter late, and the camera may
// pan. Rendering and ground truth come from the same description, so every frame's true boxes and ids are known.
#pragma once
#include <opencv2/core.hpp>

#include <string>
#include <utility>
#include <vector>

namespace y26 {

struct SceneObject {
  int id = 0;            // ground-truth identity
  int cls = 0;           // 0 rectangle, 1 ellipse, 2 triangle (the shapes the demo model knows)
  cv::Scalar color{0, 0, 255};
  double x = 0, y = 0;   // top-left corner at frame 0 (world coordinates)
  double vx = 0, vy = 0; // pixels per frame
  double w = 40, h = 40;
  int first = 0, last = 1 << 30;                 // visible from first to last frame (inclusive)
  std::vector<std::pair<int, int>> hidden;       // frames [a, b) where it is not drawn (occlusion)
};

struct SceneSpec {
  int width = 320, height = 240, frames = 60;
  double pan_x = 0, pan_y = 0;  // camera motion: the whole picture shifts by this many pixels per frame
  int pan_from = 0;             // frame where the pan starts
  std::vector<SceneObject> objects;
};

struct TruthBox {
  int id = 0, cls = 0;
  cv::Rect2d box;  // in image pixels, clipped to the frame
};

// Objects visible at `frame` (drawn and at least half inside the picture).
std::vector<TruthBox> scene_truth(const SceneSpec& s, int frame);
// The frame as a BGR image: a noisy colour gradient (texture for motion compensation) with the shapes on top.
cv::Mat render_scene(const SceneSpec& s, int frame);
// Writes every frame to a video file (codec from the extension: .avi MJPG, else mp4v).
void write_scene_video(const SceneSpec& s, const std::string& path, double fps = 30);

// The standard test scene: two shapes crossing each other, one hidden for `hide` frames, one entering at a third of
// the clip, one leaving early, over `frames` frames of width x height.
SceneSpec crossing_scene(int width = 320, int height = 240, int frames = 60, int hide = 8);

// `objects` shapes of random size, place and constant velocity (from `seed`): every fourth hides for 6 frames at a
// third of the clip, every fifth enters at a quarter of it.
SceneSpec random_scene(int width, int height, int frames, int objects, unsigned seed = 3);

}  // namespace y26
