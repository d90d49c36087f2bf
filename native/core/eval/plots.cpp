#include "eval/plots.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/obb_labels.h"
#include "eval/mask_metrics.h"
#include "infer/annotate.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace y26 {

bool plot_safely(const std::function<void(const std::string&)>& log, const std::string& what,
                 const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    if (log) log("WARNING: " + what + " plot failed: " + e.what());
  } catch (...) {
    if (log) log("WARNING: " + what + " plot failed");
  }
  return false;
}

void save_image_atomic(const std::string& path, const cv::Mat& bgr) {
  const std::string ext = fs::path(path).extension().string();
  const std::vector<uint8_t> bytes = encode_image(bgr, ext.empty() ? ".png" : ext, 95);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size()) || !f.flush())
      fail("cannot write " + tmp + ": check that the folder is writable and the disk is not full");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail("cannot replace " + path + ": " + ec.message());
  }
}

namespace {

const cv::Scalar kWhite(255, 255, 255), kBlack(0, 0, 0), kGrey(128, 128, 128);
const int kFont = cv::FONT_HERSHEY_SIMPLEX;

// Matplotlib's default colour cycle (tab10), BGR.
cv::Scalar tab10(size_t i) {
  static const int c[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                               {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  const auto& v = c[i % 10];
  return cv::Scalar(v[2], v[1], v[0]);
}

enum class HAlign { Left, Center, Right };
enum class VAlign { Top, Middle, Bottom };

cv::Size text_size(const std::string& s, double scale, int thick) {
  int base = 0;
  cv::Size sz = cv::getTextSize(s, kFont, scale, thick, &base);
  return {sz.width, sz.height + base};
}

void put_text(cv::Mat& im, const std::string& s, cv::Point at, double scale, const cv::Scalar& color, int thick = 1,
              HAlign ha = HAlign::Left, VAlign va = VAlign::Top) {
  int base = 0;
  const cv::Size sz = cv::getTextSize(s, kFont, scale, thick, &base);
  int x = at.x, y = at.y;
  if (ha == HAlign::Center) x -= sz.width / 2;
  if (ha == HAlign::Right) x -= sz.width;
  if (va == VAlign::Top) y += sz.height;
  if (va == VAlign::Middle) y += sz.height / 2;
  cv::putText(im, s, cv::Point(x, y), kFont, scale, color, thick, cv::LINE_AA);
}

// Dark text rotated 90 degrees counter-clockwise, drawn by darkening (for light backgrounds); `at` is where the
// rotated text's box starts (x: left edge, y: bottom end of the text, centred on `at` with ha Center).
void put_text_vertical(cv::Mat& im, const std::string& s, cv::Point at, double scale, int thick, HAlign ha) {
  const cv::Size sz = text_size(s, scale, thick);
  if (sz.width <= 0 || sz.height <= 0) return;
  cv::Mat t(sz.height + 2, sz.width + 2, CV_8UC3, kWhite);
  put_text(t, s, {1, 1}, scale, kBlack, thick);
  cv::Mat r;
  cv::rotate(t, r, cv::ROTATE_90_COUNTERCLOCKWISE);
  int x = at.x, y = at.y - r.rows;  // the text reads upwards and ends at `at`
  if (ha == HAlign::Center) y = at.y - r.rows / 2;
  cv::Rect dst(x, y, r.cols, r.rows);
  cv::Rect clip = dst & cv::Rect(0, 0, im.cols, im.rows);
  if (clip.empty()) return;
  cv::Mat roi = im(clip);
  cv::min(roi, r(cv::Rect(clip.x - dst.x, clip.y - dst.y, clip.width, clip.height)), roi);
}

std::string num_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

// About four round tick values (1, 2, 2.5, 5 x 10^k) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 4.0, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

struct Series {
  std::vector<double> x, y;
  cv::Scalar color = tab10(0);
  int thickness = 1;
  bool dotted = false, markers = false;
  std::string label;
};

struct ChartStyle {
  std::string title, xlabel, ylabel;
  bool unit_range = false;  // both axes 0..1 (curves); otherwise the data range plus 5 % margins
  double font = 0.45;       // tick label scale; titles are larger
  int legend_width = 0;     // > 0: legend in a column right of the axes
  bool legend_inside = false;
};

void dotted_polyline(cv::Mat& im, const std::vector<cv::Point2d>& pts, const cv::Scalar& color, int thick) {
  const double on = 2.0 * thick, period = 5.0 * thick;
  double phase = 0;
  for (size_t i = 1; i < pts.size(); ++i) {
    const cv::Point2d a = pts[i - 1], d = pts[i] - pts[i - 1];
    const double len = std::hypot(d.x, d.y);
    for (double s = 0; s < len;) {
      const double pos = std::fmod(phase + s, period);
      const double left = pos < on ? on - pos : period - pos;
      const double e = std::min(len, s + left);
      if (pos < on) cv::line(im, a + d * (s / len), a + d * (e / len), color, thick, cv::LINE_AA);
      s = e + 1e-9;
    }
    phase += len;
  }
}

void draw_legend(cv::Mat& im, cv::Point at, const std::vector<Series>& series, double scale) {
  const int row = text_size("Ag", scale, 1).height + 6;
  int y = at.y;
  for (const auto& s : series) {
    if (s.label.empty()) continue;
    const int cy = y + row / 2;
    if (s.dotted) dotted_polyline(im, {{(double)at.x, (double)cy}, {at.x + 28.0, (double)cy}}, s.color, std::max(1, s.thickness));
    else cv::line(im, {at.x, cy}, {at.x + 28, cy}, s.color, std::max(1, s.thickness), cv::LINE_AA);
    if (s.markers) cv::circle(im, {at.x + 14, cy}, 3, s.color, cv::FILLED, cv::LINE_AA);
    put_text(im, s.label, {at.x + 36, cy}, scale, kBlack, 1, HAlign::Left, VAlign::Middle);
    y += row;
  }
}

// A line chart in `area` of `im`: title, axes with ticks, the series, an optional legend.
void draw_chart(cv::Mat& im, cv::Rect area, const ChartStyle& st, const std::vector<Series>& series) {
  const double fs = st.font;
  const int th = text_size("Ag", fs, 1).height;
  const int title_h = text_size("Ag", fs * 1.25, 1).height + 10;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!st.unit_range) {
    bool any = false;
    for (const auto& s : series)
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        if (!any) x0 = x1 = s.x[i], y0 = y1 = s.y[i], any = true;
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
      }
    auto widen = [](double& lo, double& hi) {
      if (hi - lo < 1e-12) {
        const double d = std::max(std::abs(lo) * 0.05, 0.05);
        lo -= d, hi += d;
      } else {
        const double m = (hi - lo) * 0.05;
        lo -= m, hi += m;
      }
    };
    widen(x0, x1);
    widen(y0, y1);
  }
  const auto yt = nice_ticks(y0, y1), xt = nice_ticks(x0, x1);
  int ytw = 0;
  for (double v : yt) ytw = std::max(ytw, text_size(num_text(v), fs, 1).width);
  const int left = area.x + ytw + 10 + (st.ylabel.empty() ? 0 : th + 12);
  const int top = area.y + (st.title.empty() ? 6 : title_h + 4);
  const int right = area.x + area.width - 22 - st.legend_width;  // room for the last x tick label
  const int bottom = area.y + area.height - (th + 12) - (st.xlabel.empty() ? 0 : th + 10);
  if (right - left < 20 || bottom - top < 20) return;
  const cv::Rect plot(left, top, right - left, bottom - top);
  auto px = [&](double x) { return plot.x + (x - x0) / (x1 - x0) * plot.width; };
  auto py = [&](double y) { return plot.y + plot.height - (y - y0) / (y1 - y0) * plot.height; };

  if (!st.title.empty())
    put_text(im, st.title, {plot.x + plot.width / 2, area.y + 4}, fs * 1.25, kBlack, 1, HAlign::Center);
  for (double v : yt) {
    const int y = (int)std::lround(py(v));
    cv::line(im, {plot.x - 4, y}, {plot.x, y}, kBlack, 1);
    put_text(im, num_text(v), {plot.x - 7, y}, fs, kBlack, 1, HAlign::Right, VAlign::Middle);
  }
  for (double v : xt) {
    const int x = (int)std::lround(px(v));
    cv::line(im, {x, plot.y + plot.height}, {x, plot.y + plot.height + 4}, kBlack, 1);
    put_text(im, num_text(v), {x, plot.y + plot.height + 7}, fs, kBlack, 1, HAlign::Center);
  }
  if (!st.xlabel.empty())
    put_text(im, st.xlabel, {plot.x + plot.width / 2, plot.y + plot.height + th + 16}, fs * 1.1, kBlack, 1, HAlign::Center);
  if (!st.ylabel.empty()) put_text_vertical(im, st.ylabel, {area.x + 2, plot.y + plot.height / 2}, fs * 1.1, 1, HAlign::Center);

  cv::Mat canvas = im(plot);  // the lines, clipped to the axes
  for (const auto& s : series) {
    std::vector<cv::Point2d> pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) pts.emplace_back(px(s.x[i]) - plot.x, py(s.y[i]) - plot.y);
    if (s.dotted) {
      dotted_polyline(canvas, pts, s.color, s.thickness);
    } else {
      std::vector<cv::Point> ip;
      for (const auto& p : pts) ip.emplace_back((int)std::lround(p.x), (int)std::lround(p.y));
      if (ip.size() > 1) cv::polylines(canvas, ip, false, s.color, s.thickness, cv::LINE_AA);
    }
    if (s.markers)
      for (const auto& p : pts) cv::circle(canvas, cv::Point((int)std::lround(p.x), (int)std::lround(p.y)), 3, s.color, cv::FILLED, cv::LINE_AA);
  }
  cv::rectangle(im, plot, kBlack, 1);
  if (st.legend_width > 0) draw_legend(im, {plot.x + plot.width + 12, plot.y}, series, fs);
  else if (st.legend_inside) draw_legend(im, {plot.x + 8, plot.y + 6}, series, fs * 0.9);
}

// The official _gaussian_filter1d: sigma 3, radius 4 sigma, symmetric ('reflect') edges.
std::vector<double> gaussian_smooth(const std::vector<double>& y, double sigma = 3.0) {
  const int n = (int)y.size();
  if (n == 0) return {};
  const int radius = (int)(4.0 * sigma + 0.5);
  std::vector<double> k(2 * radius + 1);
  double ks = 0;
  for (int i = -radius; i <= radius; ++i) ks += k[i + radius] = std::exp(-0.5 * (i / sigma) * (i / sigma));
  for (auto& v : k) v /= ks;
  auto at = [&](int i) {  // numpy pad 'symmetric', repeated for short inputs
    const int p = 2 * n;
    int j = ((i % p) + p) % p;
    return y[j < n ? j : p - 1 - j];
  };
  std::vector<double> out(n, 0.0);
  for (int i = 0; i < n; ++i)
    for (int t = -radius; t <= radius; ++t) out[i] += at(i + t) * k[t + radius];
  return out;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    while (!cell.empty() && (cell.back() == '\r' || cell.back() == ' ')) cell.pop_back();
    while (!cell.empty() && cell.front() == ' ') cell.erase(cell.begin());
    out.push_back(cell);
  }
  return out;
}

// matplotlib's Blues, 9 ColorBrewer stops; v in [0, 1] -> BGR.
cv::Scalar blues(double v) {
  static const int s[9][3] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239}, {158, 202, 225}, {107, 174, 214},
                              {66, 146, 198},  {33, 113, 181},  {8, 81, 156},    {8, 48, 107}};
  v = std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 1.0) * 8.0;
  const int i = std::min(7, (int)v);
  const double f = v - i;
  auto c = [&](int k) { return s[i][k] + (s[i + 1][k] - s[i][k]) * f; };
  return cv::Scalar(c(2), c(1), c(0));
}

std::string label_of(int64_t c, const std::vector<std::string>& names) {
  return c >= 0 && c < (int64_t)names.size() ? names[c] : std::to_string(c);
}

}  // namespace

// ---- results.png ----------------------------------------------------------------------------------------------

cv::Mat plot_results(const std::string& csv_path, const std::string& out_path) {
  std::ifstream f(csv_path);
  if (!f) fail("plot_results: cannot read " + csv_path);
  std::string line;
  if (!std::getline(f, line)) fail("plot_results: " + csv_path + " is empty");
  const auto header = split_csv(line);
  std::vector<std::vector<double>> cols(header.size());
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto cells = split_csv(line);
    for (size_t c = 0; c < header.size(); ++c) {
      double v = std::nan("");
      if (c < cells.size() && !cells[c].empty()) {
        try {
          v = std::stod(cells[c]);
        } catch (...) {
        }
      }
      cols[c].push_back(v);
    }
  }
  // The official selection and order: losses and metrics, each list split in half over the two rows.
  std::vector<size_t> loss, metric;
  for (size_t c = 0; c < header.size(); ++c) {
    if (header[c].find("loss") != std::string::npos) loss.push_back(c);
    else if (header[c].find("metric") != std::string::npos) metric.push_back(c);
  }
  const size_t lm = loss.size() / 2, mm = metric.size() / 2;
  std::vector<size_t> order(loss.begin(), loss.begin() + lm);
  order.insert(order.end(), metric.begin(), metric.begin() + mm);
  order.insert(order.end(), loss.begin() + lm, loss.end());
  order.insert(order.end(), metric.begin() + mm, metric.end());
  if (order.empty()) fail("plot_results: " + csv_path + " has no loss or metric columns");

  const int ncol = (int)(order.size() + 1) / 2, cw = 380, ch = 320;
  cv::Mat im(2 * ch, ncol * cw, CV_8UC3, kWhite);
  const std::vector<double>& x = cols[0];
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& y = cols[order[i]];
    Series data{x, y, tab10(0), 2, false, true, "results"};
    Series smooth{x, gaussian_smooth(y), tab10(1), 2, true, false, "smooth"};
    ChartStyle st;
    st.title = header[order[i]];
    st.font = 0.45;
    st.legend_inside = i == 1;  // the official legend sits on the second chart
    const int r = (int)i < ncol ? 0 : 1, c = (int)i % ncol;
    draw_chart(im, cv::Rect(c * cw, r * ch, cw, ch), st, {data, smooth});
  }
  save_image_atomic(out_path.empty() ? (fs::path(csv_path).parent_path() / "results.png").string() : out_path, im);
  return im;
}

// ---- image grids ----------------------------------------------------------------------------------------------

cv::Mat image_grid(const std::vector<cv::Mat>& images, const std::vector<TileLabels>& labels,
                   const std::vector<std::string>& names, double conf_thres, int max_size, int max_subplots) {
  if (images.empty()) fail("image_grid: no images");
  const int bs = std::min<int>((int)images.size(), max_subplots);
  const int ns = (int)std::ceil(std::sqrt((double)bs));
  int h = images[0].rows, w = images[0].cols;
  const double scale = (double)max_size / ns / std::max(h, w);
  if (scale < 1) h = (int)std::ceil(scale * h), w = (int)std::ceil(scale * w);
  cv::Mat mosaic(ns * h, ns * w, CV_8UC3, kWhite);
  const int fs = std::max((int)((h + w) * ns * 0.01), 18);  // the official font size in px
  const int lw = std::max(1, (int)std::lround(fs / 10.0));
  for (int i = 0; i < bs; ++i) {
    const int x = w * (i / ns), y = h * (i % ns);  // column-major, as the official grid
    cv::Mat tile;
    cv::resize(images[i], tile, cv::Size(w, h), 0, 0, cv::INTER_AREA);
    const double sx = (double)w / images[i].cols, sy = (double)h / images[i].rows;
    if (i < (int)labels.size()) {
      const TileLabels& L = labels[i];
      const int64_t n = L.cls.defined() ? L.cls.numel() : 0;
      std::vector<int64_t> keep;
      auto conf = L.conf.defined() ? L.conf.to(torch::kCPU, torch::kFloat32).contiguous() : torch::Tensor();
      for (int64_t j = 0; j < n; ++j)
        if (!conf.defined() || conf.data_ptr<float>()[j] > conf_thres) keep.push_back(j);
      auto ki = torch::tensor(keep, torch::kLong);
      auto cls = n ? L.cls.to(torch::kCPU, torch::kLong).reshape({-1}) : torch::zeros({0}, torch::kLong);
      if (!L.boxes.defined() && !keep.empty()) {  // classify: the class (and confidence) as text
        std::string t = label_of(cls[keep[0]].item<int64_t>(), names);
        if (conf.defined()) t += " " + num_text(std::round(conf[keep[0]].item<float>() * 10) / 10);
        const double sc = fs / 40.0;
        const cv::Size ts = text_size(t, sc, 1);
        cv::rectangle(tile, {0, 0}, {ts.width + 6, ts.height + 6}, cv::Scalar(64, 64, 64), cv::FILLED);
        put_text(tile, t, {3, 3}, sc, class_color(cls[keep[0]].item<int64_t>()), 1);
      } else if (!keep.empty()) {
        Result r;
        r.orig_h = h, r.orig_w = w;
        auto sc4 = torch::tensor({(float)sx, (float)sy, (float)sx, (float)sy});
        r.boxes = (L.boxes.to(torch::kCPU, torch::kFloat32).index_select(0, ki) * sc4).contiguous();
        r.cls = cls.index_select(0, ki).contiguous();
        r.conf = conf.defined() ? conf.index_select(0, ki).contiguous() : torch::ones({(int64_t)keep.size()});
        if (L.obb.defined()) {
          auto o = L.obb.to(torch::kCPU, torch::kFloat32).index_select(0, ki).clone();
          // Scaling a rotated box by (sx, sy) is exact only when they agree; the grid keeps the aspect ratio.
          o.select(1, 0).mul_((float)sx), o.select(1, 1).mul_((float)sy);
          o.select(1, 2).mul_((float)sx), o.select(1, 3).mul_((float)sy);
          r.obb = o;
        }
        if (L.keypoints.defined() && L.keypoints.numel()) {
          auto k = L.keypoints.to(torch::kCPU, torch::kFloat32).index_select(0, ki).clone();
          k.select(-1, 0).mul_((float)sx), k.select(-1, 1).mul_((float)sy);
          if (k.size(-1) == 2) k = torch::cat({k, torch::ones({k.size(0), k.size(1), 1})}, -1);
          r.keypoints = k;
        }
        if (L.masks.defined() && L.masks.numel()) {
          auto m = L.masks.to(torch::kCPU, torch::kFloat32).index_select(0, ki).unsqueeze(1);
          m = torch::nn::functional::interpolate(
              m, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kNearest));
          r.masks = m.squeeze(1).gt(0.5).to(torch::kUInt8).contiguous();
        }
        AnnotateOptions ao;
        ao.line_width = lw;
        ao.conf = conf.defined();
        ao.kpt_radius = std::max(2, lw + 1);
        tile = annotate(tile, r, names, ao);
      }
    }
    tile.copyTo(mosaic(cv::Rect(x, y, w, h)));
  }
  for (int i = 0; i < bs; ++i) {
    const int x = w * (i / ns), y = h * (i % ns);
    cv::rectangle(mosaic, cv::Rect(x, y, w, h), kWhite, 2);
    if (i < (int)labels.size() && !labels[i].title.empty())
      put_text(mosaic, labels[i].title.substr(0, 40), {x + 5, y + 5}, fs / 45.0, cv::Scalar(220, 220, 220), 1);
  }
  return mosaic;
}

std::vector<cv::Mat> batch_images(const Batch& b) {
  std::vector<cv::Mat> out;
  auto img = b.img.to(torch::kCPU).to(torch::kUInt8);
  for (int64_t i = 0; i < img.size(0); ++i) {
    auto hwc = img[i].permute({1, 2, 0}).contiguous();
    cv::Mat rgb((int)hwc.size(0), (int)hwc.size(1), CV_8UC3, hwc.data_ptr<uint8_t>());
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    out.push_back(bgr);
  }
  return out;
}

std::vector<TileLabels> batch_labels(const Batch& b, Task task) {
  const int64_t B = b.size(), H = b.img.size(2), W = b.img.size(3);
  std::vector<TileLabels> out(B);
  auto bidx = b.batch_idx.to(torch::kCPU).to(torch::kLong).reshape({-1});
  auto cls = b.cls.to(torch::kCPU).reshape({-1}).to(torch::kLong);
  for (int64_t i = 0; i < B; ++i)
    if (i < (int64_t)b.im_file.size()) out[i].title = fs::path(b.im_file[i]).filename().string();
  if (task == Task::Classify) {
    for (int64_t i = 0; i < B && i < cls.numel(); ++i) out[i].cls = cls.slice(0, i, i + 1);
    return out;
  }
  auto xywh = b.bboxes.to(torch::kCPU, torch::kFloat32).reshape({-1, 4});
  auto scale = torch::tensor({(float)W, (float)H, (float)W, (float)H});
  auto xyxy = torch::stack({xywh.select(1, 0) - xywh.select(1, 2) / 2, xywh.select(1, 1) - xywh.select(1, 3) / 2,
                            xywh.select(1, 0) + xywh.select(1, 2) / 2, xywh.select(1, 1) + xywh.select(1, 3) / 2},
                           1) * scale;
  torch::Tensor rboxes, kpts;
  if (task == Task::Obb && cls.numel()) rboxes = batch_rboxes(b, /*normalized=*/false);
  if (task == Task::Pose && b.keypoints.defined() && b.keypoints.numel()) {
    kpts = b.keypoints.to(torch::kCPU, torch::kFloat32).clone();
    kpts.select(-1, 0).mul_((float)W), kpts.select(-1, 1).mul_((float)H);
  }
  const bool polys = task == Task::Segment && (int64_t)b.segments.size() == cls.numel();
  for (int64_t i = 0; i < B; ++i) {
    auto sel = (bidx == i).nonzero().reshape({-1});
    TileLabels& L = out[i];
    L.cls = cls.index_select(0, sel);
    L.boxes = xyxy.index_select(0, sel);
    if (rboxes.defined()) L.obb = rboxes.index_select(0, sel);
    if (kpts.defined()) L.keypoints = kpts.index_select(0, sel);
    if (polys && sel.numel()) {
      auto m = torch::zeros({sel.numel(), H, W}, torch::kUInt8);
      for (int64_t j = 0; j < sel.numel(); ++j) {
        const auto& seg = b.segments[sel[j].item<int64_t>()];
        if (!seg.defined() || seg.numel() < 6) continue;
        auto s = seg.to(torch::kCPU, torch::kFloat32).reshape({-1, 2}).contiguous();
        std::vector<cv::Point> pts;
        for (int64_t k = 0; k < s.size(0); ++k)
          pts.emplace_back((int)std::lround(s[k][0].item<float>() * W), (int)std::lround(s[k][1].item<float>() * H));
        cv::Mat mm((int)H, (int)W, CV_8UC1, m[j].data_ptr<uint8_t>());
        cv::fillPoly(mm, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(1));
      }
      L.masks = m;
    }
  }
  return out;
}

std::vector<TileLabels> batch_predictions(const Batch& b, const std::vector<torch::Tensor>& dets,
                                          Task task, const std::vector<int64_t>& kpt_shape,
                                          const torch::Tensor& proto) {
  const int64_t H = b.img.size(2), W = b.img.size(3);
  std::vector<TileLabels> out(dets.size());
  for (size_t i = 0; i < dets.size(); ++i) {
    TileLabels& L = out[i];
    if (i < b.im_file.size()) L.title = fs::path(b.im_file[i]).filename().string();
    auto d = dets[i].to(torch::kCPU, torch::kFloat32);
    if (d.dim() != 2 || d.size(1) < 6) d = torch::zeros({0, 6});
    L.conf = d.select(1, 4).contiguous();
    L.cls = d.select(1, 5).to(torch::kLong);
    if (task == Task::Obb && d.size(1) >= 7) {
      L.obb = torch::cat({d.slice(1, 0, 4), d.slice(1, 6, 7)}, 1);
      const auto c = L.obb;  // the enclosing axis-aligned box, for the tag position
      auto hw = (c.select(1, 2).abs() + c.select(1, 3).abs()) / 2;
      L.boxes = torch::stack({c.select(1, 0) - hw, c.select(1, 1) - hw, c.select(1, 0) + hw, c.select(1, 1) + hw}, 1);
    } else {
      L.boxes = d.slice(1, 0, 4);
    }
    if (task == Task::Pose && kpt_shape.size() == 2 && d.size(1) >= 6 + kpt_shape[0] * kpt_shape[1])
      L.keypoints = d.slice(1, 6, 6 + kpt_shape[0] * kpt_shape[1]).reshape({d.size(0), kpt_shape[0], kpt_shape[1]});
    if (task == Task::Segment && proto.defined() && (int64_t)i < proto.size(0) && d.size(0) && d.size(1) > 6)
      L.masks = predict_masks(proto[i].to(torch::kCPU, torch::kFloat32), d.slice(1, 6, d.size(1)), L.boxes, H, W,
                              /*native=*/false);
  }
  return out;
}

// ---- confusion matrix -----------------------------------------------------------------------------------------

std::string plot_confusion_matrix(const ConfusionMatrix& cm, bool normalize, const std::string& dir) {
  auto full = normalize ? cm.normalized() : cm.matrix();
  std::vector<std::string> names = cm.names();
  if (!cm.classify()) names.push_back("background");
  // Many classes: every k-th row and column, as the official plot does from 100 classes on.
  const size_t nc = cm.names().size();
  std::vector<size_t> idx;
  const size_t k = nc >= 100 ? std::max<size_t>(2, nc / 60) : 1;
  for (size_t i = 0; i < full.size(); i += k) idx.push_back(i);
  if (!cm.classify() && idx.back() != full.size() - 1) idx.push_back(full.size() - 1);  // keep background
  const size_t n = idx.size();
  double vmax = 0;
  for (size_t r : idx)
    for (size_t c : idx)
      if (full[r][c] >= 0.005) vmax = std::max(vmax, full[r][c]);

  const int S = 1000;                                  // matrix side in px
  const int cell = std::max(1, S / (int)n);
  const int side = cell * (int)n;
  const bool ticks = n < 99;
  const double tick_fs = std::clamp(cell / 40.0, 0.3, 0.6);
  int label_w = 0;
  if (ticks)
    for (size_t i : idx) label_w = std::max(label_w, text_size(names[i], tick_fs, 1).width);
  const int left = 60 + label_w, top = 80, bottom = 70 + label_w, right = 170;
  cv::Mat im(top + side + bottom, left + side + right, CV_8UC3, kWhite);
  const std::string title = normalize ? "Confusion Matrix Normalized" : "Confusion Matrix";
  put_text(im, title, {left + side / 2, 25}, 0.8, kBlack, 1, HAlign::Center);
  const double thresh = 0.45 * (normalize ? 1.0 : vmax);
  const double cell_fs = std::clamp(cell / 90.0, 0.25, 0.6);
  for (size_t r = 0; r < n; ++r)
    for (size_t c = 0; c < n; ++c) {
      const double v = full[idx[r]][idx[c]];
      const cv::Rect box(left + (int)c * cell, top + (int)r * cell, cell, cell);
      if (v < 0.005) continue;  // blank, as the official NaN cells
      cv::rectangle(im, box, blues(vmax > 0 ? v / vmax : 0), cv::FILLED);
      if (n < 30) {
        char buf[32];
        if (normalize) std::snprintf(buf, sizeof buf, "%.2f", v);
        else std::snprintf(buf, sizeof buf, "%lld", (long long)std::llround(v));
        put_text(im, buf, {box.x + cell / 2, box.y + cell / 2}, cell_fs, v > thresh ? kWhite : kBlack, 1,
                 HAlign::Center, VAlign::Middle);
      }
    }
  if (ticks)
    for (size_t i = 0; i < n; ++i) {
      const int cpos = (int)i * cell + cell / 2;
      put_text(im, names[idx[i]], {left - 8, top + cpos}, tick_fs, kBlack, 1, HAlign::Right, VAlign::Middle);
      put_text_vertical(im, names[idx[i]], {left + cpos - text_size("A", tick_fs, 1).height / 2, top + side + 8 + text_size(names[idx[i]], tick_fs, 1).width}, tick_fs, 1, HAlign::Left);
    }
  put_text(im, "True", {left + side / 2, top + side + bottom - 35}, 0.6, kBlack, 1, HAlign::Center);
  put_text_vertical(im, "Predicted", {8, top + side / 2}, 0.6, 1, HAlign::Center);
  // Colour bar with a few ticks.
  const int bx = left + side + 40, bw = 28;
  for (int y = 0; y < side; ++y)
    cv::line(im, {bx, top + side - 1 - y}, {bx + bw, top + side - 1 - y}, blues((double)y / std::max(1, side - 1)));
  const double top_v = vmax > 0 ? vmax : 1.0;
  for (double v : nice_ticks(0, top_v)) {
    if (v > top_v + 1e-9) continue;
    const int y = top + side - 1 - (int)std::lround(v / top_v * (side - 1));
    cv::line(im, {bx + bw, y}, {bx + bw + 5, y}, kBlack, 1);
    put_text(im, num_text(v), {bx + bw + 9, y}, 0.45, kBlack, 1, HAlign::Left, VAlign::Middle);
  }
  const std::string path = (fs::path(dir) / (normalize ? "confusion_matrix_normalized.png" : "confusion_matrix.png")).string();
  save_image_atomic(path, im);
  return path;
}

// ---- PR / metric-confidence curves ----------------------------------------------------------------------------

std::vector<std::string> plot_curves(const ApPerClass& a, const std::vector<std::string>& names,
                                     const std::string& dir, const std::string& prefix) {
  std::vector<std::string> written;
  const size_t nc = a.classes.size();
  const std::vector<double> px = a.px.empty() ? std::vector<double>(1000, 0.0) : a.px;
  const bool per_class = nc > 0 && nc < 21;
  const int W = 1350, Hh = 900;
  ChartStyle st;
  st.unit_range = true;
  st.font = 0.6;
  st.legend_width = 330;
  auto class_series = [&](const std::vector<std::vector<double>>& ys, bool pr) {
    std::vector<Series> s;
    for (size_t i = 0; i < nc && i < ys.size(); ++i) {
      Series c{px, ys[i], per_class ? tab10(i) : kGrey, 1, false, false, ""};
      if (per_class) {
        c.label = label_of(a.classes[i], names);
        if (pr) {
          char buf[32];
          std::snprintf(buf, sizeof buf, " %.3f", a.ap.size() > i && !a.ap[i].empty() ? a.ap[i][0] : 0.0);
          c.label += buf;
        }
      }
      s.push_back(std::move(c));
    }
    return s;
  };
  auto mean_of = [&](const std::vector<std::vector<double>>& ys) {
    std::vector<double> m(px.size(), 0.0);
    for (size_t j = 0; j < px.size(); ++j) {
      double s = 0;
      for (size_t i = 0; i < nc && i < ys.size(); ++i) s += ys[i][j];
      m[j] = nc ? s / (double)nc : 0.0;
    }
    return m;
  };
  {  // precision-recall at IoU 0.5
    auto s = class_series(a.pr_curve, true);
    double map50 = 0;
    for (size_t i = 0; i < nc && i < a.ap.size(); ++i) map50 += a.ap[i].empty() ? 0.0 : a.ap[i][0];
    char buf[64];
    std::snprintf(buf, sizeof buf, "all classes %.3f mAP@0.5", nc ? map50 / (double)nc : 0.0);
    s.push_back(Series{px, mean_of(a.pr_curve), cv::Scalar(255, 0, 0), 3, false, false, buf});
    cv::Mat im(Hh, W, CV_8UC3, kWhite);
    st.title = "Precision-Recall Curve", st.xlabel = "Recall", st.ylabel = "Precision";
    draw_chart(im, cv::Rect(0, 0, W, Hh), st, s);
    written.push_back((fs::path(dir) / (prefix + "PR_curve.png")).string());
    save_image_atomic(written.back(), im);
  }
  const struct {
    const char* file;
    const char* ylabel;
    const std::vector<std::vector<double>>* ys;
  } mc[] = {{"F1_curve.png", "F1", &a.f1_curve}, {"P_curve.png", "Precision", &a.p_curve}, {"R_curve.png", "Recall", &a.r_curve}};
  for (const auto& m : mc) {
    auto s = class_series(*m.ys, false);
    const auto y = smooth(mean_of(*m.ys), 0.1);
    const size_t best = std::max_element(y.begin(), y.end()) - y.begin();
    char buf[64];
    std::snprintf(buf, sizeof buf, "all classes %.2f at %.3f", y.empty() ? 0.0 : y[best], y.empty() ? 0.0 : px[best]);
    s.push_back(Series{px, y, cv::Scalar(255, 0, 0), 3, false, false, buf});
    cv::Mat im(Hh, W, CV_8UC3, kWhite);
    st.title = std::string(m.ylabel) + "-Confidence Curve", st.xlabel = "Confidence", st.ylabel = m.ylabel;
    draw_chart(im, cv::Rect(0, 0, W, Hh), st, s);
    written.push_back((fs::path(dir) / (prefix + m.file)).string());
    save_image_atomic(written.back(), im);
  }
  return written;
}

}  // namespace y26
