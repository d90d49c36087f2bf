// Classification data and validation as the official ClassificationDataset / ClassificationValidator:
// ImageNet-style folders (root/{train,val,test}/<class>/*.jpg), class names from the sorted train subfolders,
// classify_transforms preprocessing, top-1 / top-5 accuracy, fitness = their mean.
#pragma once
#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/yolo.h"

namespace y26 {

struct ClassifySplit {
  std::string root;                 // the data set folder
  std::string dir;                  // the split folder actually read (e.g. root/val, or root/test as fallback)
  std::vector<std::string> names;   // class index -> name (sorted train subfolders)
  std::vector<std::string> files;   // images, sorted by class folder then path
  std::vector<int64_t> labels;      // class index of each file
};

// True when `data` names a classification data set (a directory) rather than a data.yaml.
bool is_classify_data(const std::string& data);

// Opens one split. split "val" reads val/, validation/ or valid/, else test/; "test" reads test/, else the val
// folder; "train" reads train/. Class names come from the sorted subfolders of train/ (of the split folder when
// there is no train/). Fails naming the folder and what it holds when the split or its images are missing, or a
// split has a class folder that train/ lacks.
ClassifySplit open_classify_split(const std::string& root, const std::string& split,
                                  const std::function<void(const std::string&)>& log = {});

struct ClassifyValOptions {
  int imgsz_h = 224, imgsz_w = 224;
  int batch = 16;
  int workers = 2;       // decode threads
  bool half = false;     // CUDA only
  std::string device = "cpu";
  bool compute_loss = false;  // cross-entropy of the logits (training's val/loss)
  // Plots: when set, val_batch{0,1,2}_labels.jpg / _pred.jpg and the (nc x nc) confusion matrices go here.
  std::string plots_dir;
  std::function<void(const std::string&)> log;  // plot warnings
};

struct ClassifyValResult {
  double top1 = 0, top5 = 0, fitness = 0, loss = 0;
  int64_t images = 0;
  double preprocess_ms = 0, inference_ms = 0, postprocess_ms = 0;  // per image
  std::map<std::string, double> metrics;  // metrics/accuracy_top1, metrics/accuracy_top5, fitness (+ val/loss)
  std::string table, speed_line;
  std::vector<std::vector<double>> confusion_matrix;  // with plots: [predicted][true] top-1 counts
};

// Top-1 / top-5 accuracy of predicted class rankings (n, k) against targets (n): the official ClassifyMetrics.
std::pair<double, double> classify_accuracy(const torch::Tensor& top_pred, const torch::Tensor& targets);

// One pass over the split; the model is put in eval mode and left there.
ClassifyValResult validate_classify(YoloModel& model, const ClassifySplit& split, const ClassifyValOptions& opt);

}  // namespace y26
