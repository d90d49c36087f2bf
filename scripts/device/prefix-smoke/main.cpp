// JPEG and PNG round trips, an MJPG AVI written and read back (videoio's built-in backend), a YAML parse and a
// libturbojpeg decode: what the core needs from the carried libraries.
#include <turbojpeg.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <vector>

int main() {
  cv::Mat img(48, 64, CV_8UC3, cv::Scalar(10, 120, 240));
  cv::circle(img, {32, 24}, 10, cv::Scalar(255, 255, 255), -1);
  std::vector<uchar> jpg, png;
  if (!cv::imencode(".jpg", img, jpg) || !cv::imencode(".png", img, png)) return std::puts("encode failed"), 1;
  if (cv::imdecode(png, cv::IMREAD_COLOR).size() != img.size()) return std::puts("png decode failed"), 1;
  tjhandle tj = tjInitDecompress();
  int w = 0, h = 0, ss = 0, cs = 0;
  if (tjDecompressHeader3(tj, jpg.data(), (unsigned long)jpg.size(), &w, &h, &ss, &cs) != 0 || w != 64 || h != 48)
    return std::puts("turbojpeg failed"), 1;
  tjDestroy(tj);
  const char* avi = "/tmp/prefix_smoke.avi";
  {
    cv::VideoWriter vw(avi, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10.0, img.size());
    if (!vw.isOpened()) return std::puts("VideoWriter MJPG failed"), 1;
    for (int i = 0; i < 3; ++i) vw << img;
  }
  cv::VideoCapture vc(avi);
  cv::Mat f;
  if (!vc.isOpened() || !vc.read(f) || f.size() != img.size()) return std::puts("VideoCapture MJPG failed"), 1;
  if (YAML::Load("a: [1, 2]")["a"][1].as<int>() != 2) return std::puts("yaml failed"), 1;
  std::printf("prefix_smoke: ok (OpenCV %s)\n", CV_VERSION);
  return 0;
}
