#include "scenic/common_lib/summary_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/protobuf_wire.h"
#include "scenic/common_lib/tfrecord.h"

namespace scenic::common {
namespace {

using namespace proto;

// Field numbers of tensorflow/core/util/event.proto and framework/summary.proto.
enum : uint32_t {
  kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5,
  kSummaryValue = 1,
  kValueTag = 1, kValueSimple = 2, kValueImage = 4, kValueHisto = 5, kValueTensor = 8, kValueMetadata = 9,
  kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4,
  kHistoMin = 1, kHistoMax = 2, kHistoNum = 3, kHistoSum = 4, kHistoSumSquares = 5, kHistoLimits = 6,
  kHistoBuckets = 7,
  kMetadataPluginData = 1, kPluginName = 1,
  kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8, kShapeDim = 2, kDimSize = 1,
  kDtString = 7,
};

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void make_dirs(const std::string& dir) {
  std::string partial;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error("summaries: cannot create directory '" + partial + "'");
    }
    if (i < dir.size()) partial += dir[i];
  }
}

std::string tagged(const std::string& tag, const std::string& payload) {
  std::string value;
  put_bytes(value, kValueTag, tag);
  value += payload;
  return value;
}

}  // namespace

SummaryWriter::SummaryWriter(const std::string& logdir) {
  make_dirs(logdir);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = logdir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(wall_time())) + "." + host + "." +
          std::to_string(::getpid());
  try {
    file_ = std::make_unique<TFRecordWriter>(path_);
  } catch (const std::exception& e) {
    throw Error("summaries: cannot create '" + path_ + "': " + e.what());
  }
  std::string event;
  put_double(event, kEventWallTime, wall_time());
  put_uint(event, kEventStep, 0);
  put_bytes(event, kEventFileVersion, "brain.Event:2");
  file_->write(event);
  file_->flush();
}

SummaryWriter::~SummaryWriter() = default;

void SummaryWriter::write_value(int64_t step, const std::string& value_proto) {
  std::string summary, event;
  put_bytes(summary, kSummaryValue, value_proto);
  put_double(event, kEventWallTime, wall_time());
  put_uint(event, kEventStep, static_cast<uint64_t>(step));
  put_bytes(event, kEventSummary, summary);
  try {
    file_->write(event);
    file_->flush();
  } catch (const std::exception& e) {
    throw Error("summaries: cannot write to '" + path_ + "' (disk full?): " + e.what());
  }
}

void SummaryWriter::scalar(int64_t step, const std::string& tag, double value) {
  std::string payload;
  put_float(payload, kValueSimple, static_cast<float>(value));
  write_value(step, tagged(tag, payload));
}

void SummaryWriter::scalars(int64_t step, const std::string& prefix, const std::map<std::string, double>& values) {
  for (const auto& [name, v] : values) scalar(step, prefix + name, v);
}

void SummaryWriter::histogram(int64_t step, const std::string& tag, const torch::Tensor& values) {
  auto v = values.detach().to(torch::kCPU, torch::kFloat64).flatten();
  v = v.index({torch::isfinite(v)});
  std::string histo;
  const int64_t n = v.numel();
  const double lo = n ? v.min().item<double>() : 0.0, hi = n ? v.max().item<double>() : 0.0;
  put_double(histo, kHistoMin, lo);
  put_double(histo, kHistoMax, hi);
  put_double(histo, kHistoNum, static_cast<double>(n));
  put_double(histo, kHistoSum, n ? v.sum().item<double>() : 0.0);
  put_double(histo, kHistoSumSquares, n ? v.square().sum().item<double>() : 0.0);
  constexpr int kBuckets = 30;
  std::vector<double> limits, counts;
  if (n > 0) {
    const double width = hi > lo ? (hi - lo) / kBuckets : 1.0;
    auto idx = hi > lo ? ((v - lo) / width).floor().clamp(0, kBuckets - 1).to(torch::kLong)
                       : torch::zeros({n}, torch::kLong);
    auto hist = torch::bincount(idx, {}, kBuckets).to(torch::kFloat64);
    const int buckets = hi > lo ? kBuckets : 1;
    for (int b = 0; b < buckets; ++b) {
      limits.push_back(b == buckets - 1 ? hi : lo + width * (b + 1));
      counts.push_back(hist[b].item<double>());
    }
  }
  put_packed_doubles(histo, kHistoLimits, limits);
  put_packed_doubles(histo, kHistoBuckets, counts);
  std::string payload;
  put_bytes(payload, kValueHisto, histo);
  write_value(step, tagged(tag, payload));
}

void SummaryWriter::image(int64_t step, const std::string& tag, const torch::Tensor& image) {
  auto img = image.detach().cpu();
  if (img.dim() == 2) img = img.unsqueeze(0);
  if (img.dim() != 3 || (img.size(0) != 1 && img.size(0) != 3))
    throw Error("summaries: image '" + tag + "' must be [C, H, W] with C 1 or 3, got " + c10::str(image.sizes()));
  if (img.is_floating_point()) img = (img.clamp(0, 1) * 255).round();
  img = img.to(torch::kUInt8).permute({1, 2, 0}).contiguous();  // HWC, RGB
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1)), c = static_cast<int>(img.size(2));
  cv::Mat mat(h, w, c == 3 ? CV_8UC3 : CV_8UC1, img.data_ptr<uint8_t>());
  cv::Mat bgr;
  if (c == 3) cv::cvtColor(mat, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> png;
  cv::imencode(".png", c == 3 ? bgr : mat, png);
  std::string im;
  put_uint(im, kImageHeight, h);
  put_uint(im, kImageWidth, w);
  put_uint(im, kImageColorspace, c);
  put_bytes(im, kImageEncoded, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
  std::string payload;
  put_bytes(payload, kValueImage, im);
  write_value(step, tagged(tag, payload));
}

void SummaryWriter::text(int64_t step, const std::string& tag, const std::string& text) {
  std::string plugin, metadata, shape, dim, tensor, payload;
  put_bytes(plugin, kPluginName, "text");
  put_bytes(metadata, kMetadataPluginData, plugin);
  put_uint(dim, kDimSize, 1);
  put_bytes(shape, kShapeDim, dim);
  put_uint(tensor, kTensorDtype, kDtString);
  put_bytes(tensor, kTensorShape, shape);
  put_bytes(tensor, kTensorStringVal, text);
  put_bytes(payload, kValueMetadata, metadata);
  put_bytes(payload, kValueTensor, tensor);
  write_value(step, tagged(tag, payload));
}

torch::Tensor image_grid(const torch::Tensor& batch, int64_t max_images) {
  if (batch.dim() != 4) throw Error("image_grid: expected [B, C, H, W], got " + c10::str(batch.sizes()));
  auto x = batch.detach().cpu().to(torch::kFloat32).slice(0, 0, std::min<int64_t>(max_images, batch.size(0)));
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto flat = x.reshape({b, -1});
  auto lo = std::get<0>(flat.min(1)).view({b, 1, 1, 1}), hi = std::get<0>(flat.max(1)).view({b, 1, 1, 1});
  x = (x - lo) / (hi - lo).clamp_min(1e-12);
  const int64_t cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(b))));
  const int64_t rows = (b + cols - 1) / cols;
  auto grid = torch::zeros({c, rows * h, cols * w});
  for (int64_t i = 0; i < b; ++i)
    grid.slice(1, (i / cols) * h, (i / cols + 1) * h).slice(2, (i % cols) * w, (i % cols + 1) * w).copy_(x[i]);
  return grid;
}

}  // namespace scenic::common
