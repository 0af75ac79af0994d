// BaseModel: a network plus its loss and metrics, the unit of plug-in/plug-out research.
//
// Mirrors Scenic's model_lib/base_models/base_model.py. `build_network()` is Scenic's
// `build_flax_model()`; `loss_function(outputs, batch, network)` returns a scalar;
// `get_metrics_fn(split)` returns a function giving `name -> (sum, normalizer)` pairs
// (0-dim tensors, left on the device) that the trainer sums over steps and processes
// and divides once. Padded examples (batch_mask = 0) count nowhere.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/dataset.h"

namespace scenic::model {

// A network maps `inputs` [B, ...] (images NCHW) to outputs (logits [B, K] for the
// classification models). Train/eval mode is torch's Module::train(bool).
class Network : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& inputs) = 0;
  // The features the classifier head reads, [B, D]: Scenic's `pre_logits` intermediate,
  // which the transfer trainer's few-shot and linear-probe evaluations use (Scenic
  // captures it with capture_intermediates; here a network opts in by overriding this).
  virtual torch::Tensor representation(const torch::Tensor& /*inputs*/) {
    throw Error(std::string("this network has no representation() (the 'pre_logits' features that ") +
                "few-shot and linear-probe evaluation need); override model::Network::representation");
  }
  // Whether CPU training and evaluation steps may run slices of one batch on several
  // threads at once, each op single-threaded (train_lib/batch_split.h), instead of
  // splitting every op over the threads. Opt-in: it pays for networks of many small ops
  // (Transformers, Mixers), not for convolution networks, whose oneDNN convolutions
  // split well by themselves (ResNet-50 eval: 226 ms split vs 207 ms not). Training
  // also needs every example's forward and backward independent of the others' and
  // every op safe in two threads at once: no batch statistics, dropout through
  // model_lib/layers/random_masks.h, and no oneDNN convolution backward (its weight
  // gradient came out wrong when two threads of one OpenMP team ran it; bench/README.md,
  // 2026-12-07). ViT and Mixer opt in.
  virtual bool splits_batch_on_cpu() const { return false; }
};

// (sum over the batch, normalizer), both 0-dim float tensors.
using MetricPair = std::pair<torch::Tensor, torch::Tensor>;
using MetricsDict = std::map<std::string, MetricPair>;
using MetricsFn = std::function<MetricsDict(const torch::Tensor& outputs, const dataset::Batch& batch)>;

class BaseModel {
 public:
  // `config` is the whole experiment config; networks read their keys under `model.`.
  BaseModel(common::ConfigDict config, dataset::MetaData meta_data);
  virtual ~BaseModel() = default;

  virtual std::shared_ptr<Network> build_network() const = 0;
  // The default `model:` sub-config as YAML, used when the config has none.
  virtual std::string default_network_config() const = 0;
  virtual torch::Tensor loss_function(const torch::Tensor& outputs, const dataset::Batch& batch,
                                      const Network* network) const = 0;
  virtual MetricsFn get_metrics_fn(const std::string& split) const = 0;

  const common::ConfigDict& config() const { return config_; }
  const dataset::MetaData& meta_data() const { return meta_data_; }

 protected:
  // The `model` sub-config, filled from default_network_config() when absent
  // (call from the derived constructor, where the virtual is resolvable).
  common::ConfigDict model_config() const;

  common::ConfigDict config_;
  dataset::MetaData meta_data_;
};

// A task model (ClassificationModel, ...) completed by a network factory, so a project
// registers `vit_classification` without writing a class per (task, network) pair.
template <typename TaskModel>
class NetworkModel : public TaskModel {
 public:
  using NetworkFn = std::function<std::shared_ptr<Network>(const common::ConfigDict& model_config,
                                                           const dataset::MetaData&)>;
  NetworkModel(common::ConfigDict config, dataset::MetaData meta_data, NetworkFn network_fn,
               std::string default_config_yaml)
      : TaskModel(std::move(config), std::move(meta_data)),
        network_fn_(std::move(network_fn)),
        default_config_yaml_(std::move(default_config_yaml)) {}

  std::shared_ptr<Network> build_network() const override {
    return network_fn_(this->model_config(), this->meta_data_);
  }
  std::string default_network_config() const override { return default_config_yaml_; }

 private:
  NetworkFn network_fn_;
  std::string default_config_yaml_;
};

// Name -> model factory (Scenic's model_lib/models.py).
using ModelFactory =
    std::function<std::unique_ptr<BaseModel>(const common::ConfigDict&, const dataset::MetaData&)>;

}  // namespace scenic::model
