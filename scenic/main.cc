// The `scenic` command (Scenic's main.py + app.py):
//   scenic train --config F.yaml --workdir D [--config.a.b=value ...]
//   scenic eval  --workdir D            evaluate the latest checkpoint on the test split
//   scenic list  models|datasets|trainers
//   scenic plot  --workdir D [--metrics a,b] [--out F.png]   learning curves to a PNG
//   scenic info  --config F.yaml       parameter table and GFLOPs per example
//   scenic bench --config F.yaml [--steps N --batch_size B --mode train|eval]   step speed
//   scenic launch --nproc_per_node N [--master_port P] -- scenic train ...   N data-parallel processes
// Errors are caught here once: one line on stderr, exit status 1. A run stopped by
// SIGTERM/SIGINT saves a checkpoint and exits with 128 + the signal number.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"
#include "scenic/common_lib/malloc_tuning.h"
#include "scenic/common_lib/metric_writer.h"
#include "scenic/common_lib/plot.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"
#include "scenic/projects/baselines/weight_import.h"
#include "scenic/train_lib/benchmark.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/distributed.h"
#include "scenic/train_lib/ema.h"
#include "scenic/train_lib/launcher.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/segmentation_trainer.h"
#include "scenic/train_lib/setup.h"
#include "scenic/train_lib/train_utils.h"
#include "scenic/train_lib/trainers.h"

namespace fs = std::filesystem;
using scenic::common::ConfigDict;

namespace {

void register_everything() {
  scenic::dataset::register_builtin_datasets(scenic::dataset::DatasetRegistry::global());
  scenic::baselines::register_baseline_models(scenic::model::ModelRegistry::global());
  scenic::train::register_builtin_trainers(scenic::train::TrainerRegistry::global());
}

// Threads, dataset and model from the config (shared with `scenic info` / `scenic bench`).
using scenic::train::build_dataset;
using scenic::train::build_model;
using scenic::train::set_threads;

int cmd_train(const std::string& config_path, const std::string& workdir,
              const std::vector<std::string>& overrides) {
  auto config = ConfigDict::from_yaml_file(config_path);
  config.apply_overrides(overrides);
  // Joins the launcher's job when there is one (RANK/WORLD_SIZE, Slurm, Open MPI
  // variables; docs/distributed.md); otherwise one process. Rank 0 alone writes.
  auto dist = scenic::train::init_distributed_from_config(config);
  const bool lead = dist->is_lead();
  if (!lead) scenic::common::set_log_rank(dist->rank);
  fs::create_directories(workdir);
  if (lead) scenic::common::set_log_file((fs::path(workdir) / "log.txt").string());
  SCENIC_LOG_INFO << "scenic train --config " << config_path << " --workdir " << workdir;

  torch::manual_seed(static_cast<uint64_t>(config.get<int64_t>("rng_seed")));
  set_threads(config);
  // Keys Scenic's configs carry that have no effect here; accepted so they port as-is.
  for (const char* key : {"debug_train", "debug_eval", "xprof", "count_flops"})
    config.mark_used(key);

  scenic::train::TrainerContext ctx;
  ctx.config = config;
  ctx.workdir = workdir;
  ctx.dist = dist;
  ctx.dataset = build_dataset(config, dist.get());
  ctx.model = build_model(config, ctx.dataset->meta_data);
  const auto& train_fn = scenic::train::TrainerRegistry::global().get(config.get<std::string>("trainer_name"));
  scenic::common::MetricWriter writer(lead ? (fs::path(workdir) / "metrics.jsonl").string() : "");
  ctx.writer = &writer;
  std::unique_ptr<scenic::common::SummaryWriter> summary;
  if (config.get<bool>("write_summary", true) && lead) {
    summary = std::make_unique<scenic::common::SummaryWriter>(workdir);
    writer.mirror_to(summary.get());
    ctx.summary = summary.get();
  }
  // Weights from another library (init_from.format flax | npz | safetensors); a
  // checkpoint of this library (format scenic, the default) is the trainer's business.
  const auto init_format = config.get_optional<std::string>("init_from.format");
  if (init_format && *init_format != "scenic") {
    const auto path = config.get<std::string>("init_from.checkpoint_path");
    const auto format = *init_format;
    scenic::baselines::WeightImportOptions opts;
    opts.load_head = config.get<bool>("init_from.load_head", true);
    opts.resize_posemb = config.get<bool>("init_from.resize_posemb", true);
    opts.allow_missing = config.get<bool>("init_from.allow_missing", false);
    ctx.init_from = [path, format, opts](scenic::model::Network& network) {
      auto report = scenic::baselines::init_from_checkpoint(network, path, format, opts);
      SCENIC_LOG_INFO << "initialized from " << path << ":\n" << report.summary();
    };
  }
  ctx.finish_setup = [&] {
    config.check_all_used();
    if (lead) config.save((fs::path(workdir) / "config.yaml").string());
    if (ctx.summary != nullptr) ctx.summary->text(0, "config", "```\n" + config.to_yaml() + "\n```");
  };
  auto result = train_fn(ctx);
  scenic::train::barrier(*dist);  // nobody tears the process group down under a peer
  if (!lead) return 0;
  for (const auto& [split, metrics] : result) {
    std::cout << "final " << split << ":";
    for (const auto& [k, v] : metrics) std::cout << " " << k << "=" << v;
    std::cout << std::endl;
  }
  return 0;
}

int cmd_eval(const std::string& workdir) {
  const auto config_path = (fs::path(workdir) / "config.yaml").string();
  if (!fs::exists(config_path))
    throw scenic::Error("'" + workdir + "' has no config.yaml: is it the workdir of a `scenic train` run?");
  auto config = ConfigDict::from_yaml_file(config_path);
  set_threads(config);
  auto dataset = build_dataset(config);
  auto model = build_model(config, dataset->meta_data);
  auto network = model->build_network();
  const auto device = scenic::train::get_device(config);
  network->to(device);
  const auto ckpt_dir = (fs::path(workdir) / "checkpoints").string();
  auto latest = scenic::train::latest_checkpoint(ckpt_dir);
  if (!latest) throw scenic::Error("no checkpoint in '" + ckpt_dir + "'");
  scenic::train::TrainStateRef state{network.get(), nullptr, 0, ""};
  state.include_rng = false;
  // A run with an EMA evaluates (and ships) the averaged weights, so eval does too.
  state.load_extra = [&](torch::serialize::InputArchive& extra) {
    torch::serialize::InputArchive ema_archive;
    if (!extra.try_read("ema", ema_archive)) return;
    scenic::train::Ema ema(*network, {});
    ema.load(ema_archive);
    ema.swap();  // the network's tensors now hold the averages
    SCENIC_LOG_INFO << "evaluating the EMA weights";
  };
  scenic::train::restore_checkpoint(*latest, state);
  // What the run's trainer computes on its test split: segmentation adds the global
  // mean IoU over the whole split; DETR's COCO evaluation lives in its trainer.
  const auto trainer = config.get<std::string>("trainer_name");
  if (trainer == "detr_trainer")
    throw scenic::Error("scenic eval: a detr_trainer run is evaluated by its trainer (test AP in " + workdir +
                        "/metrics.jsonl, detections in detections_test.json)");
  std::map<std::string, double> metrics;
  if (const auto* seg = dynamic_cast<const scenic::model::SegmentationModel*>(model.get()))
    metrics = scenic::train::evaluate_segmentation(*network, *seg, *dataset, "test", device);
  else
    metrics = scenic::train::evaluate(*network, *model, *dataset, "test", device);
  scenic::common::MetricWriter writer((fs::path(workdir) / "metrics.jsonl").string());
  writer.write(state.step, "test", metrics);
  std::cout << "checkpoint " << *latest << " (step " << state.step << ") test:";
  for (const auto& [k, v] : metrics) std::cout << " " << k << "=" << v;
  std::cout << std::endl;
  return 0;
}

int cmd_list(const std::string& what) {
  std::vector<std::string> names;
  if (what == "models") names = scenic::model::ModelRegistry::global().names();
  else if (what == "datasets") names = scenic::dataset::DatasetRegistry::global().names();
  else if (what == "trainers") names = scenic::train::TrainerRegistry::global().names();
  for (const auto& n : names) std::cout << n << "\n";
  return 0;
}

int cmd_plot(const std::string& workdir, const std::vector<std::string>& metrics, std::string out) {
  const auto file = scenic::common::read_metrics_jsonl((fs::path(workdir) / "metrics.jsonl").string());
  if (file.skipped_lines > 0)
    SCENIC_LOG_WARNING << file.skipped_lines << " unreadable line(s) in metrics.jsonl skipped";
  if (out.empty()) out = (fs::path(workdir) / "curves.png").string();
  scenic::common::plot_curves(file.curves, metrics.empty() ? scenic::common::default_plot_metrics(file.curves) : metrics,
                              out, workdir);
  std::cout << "wrote " << out << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  scenic::common::tune_malloc_for_tensors();  // before the first tensor (malloc_tuning.h)
  CLI::App app{"Scenic for C++: research on attention-based vision models, on LibTorch"};
  app.require_subcommand(1);

  std::string config_path, workdir;
  auto* train = app.add_subcommand("train", "Train a model (resumes when the workdir has a checkpoint)");
  train->add_option("--config", config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  train->add_option("--workdir", workdir, "Output directory")->required();
  train->allow_extras();
  train->footer("Override any config key with --config.a.b=value (e.g. --config.batch_size=64).");

  auto* eval = app.add_subcommand("eval", "Evaluate the latest checkpoint of a workdir on the test split");
  eval->add_option("--workdir", workdir, "Workdir of a `scenic train` run")->required();

  std::string what;
  auto* list = app.add_subcommand("list", "List registered models, datasets or trainers");
  list->add_option("what", what, "models | datasets | trainers")
      ->required()
      ->check(CLI::IsMember({"models", "datasets", "trainers"}));

  std::vector<std::string> plot_metrics;
  std::string plot_out;
  auto* plot = app.add_subcommand("plot", "Draw learning curves from a workdir's metrics.jsonl to a PNG");
  plot->add_option("--workdir", workdir, "Workdir of a `scenic train` run")->required();
  plot->add_option("--metrics", plot_metrics, "Metrics to draw (default: loss, accuracy-like, learning_rate)")
      ->delimiter(',');
  plot->add_option("--out", plot_out, "Output PNG (default: <workdir>/curves.png)");

  // ---- `scenic info` / `scenic bench` (scenic/train_lib/benchmark.h). Self-contained:
  // each runs from its CLI11 callback and ends parse() with CLI::RuntimeError(status),
  // which app.exit() below returns as the exit status without printing anything.
  std::vector<int64_t> tool_input_shape;
  int64_t tool_num_classes = 0;
  scenic::train::BenchOptions bench_options;
  bool bench_json = false;
  auto* info = app.add_subcommand("info", "Parameter table and GFLOPs per example of a config's model");
  auto* bench = app.add_subcommand("bench", "Time the training or evaluation step on synthetic batches");
  for (auto* sub : {info, bench}) {
    sub->add_option("--config", config_path, "YAML config file")->required()->check(CLI::ExistingFile);
    sub->add_option("--input_shape", tool_input_shape, "C,H,W inputs instead of the config's dataset")
        ->delimiter(',');
    sub->add_option("--num_classes", tool_num_classes, "Number of classes (with --input_shape)");
    sub->allow_extras();
    sub->footer("Override any config key with --config.a.b=value (e.g. --config.model.num_layers=2).");
  }
  bench->add_option("--steps", bench_options.steps, "Timed steps")->capture_default_str();
  bench->add_option("--warmup_steps", bench_options.warmup_steps, "Untimed steps first")->capture_default_str();
  bench->add_option("--batch_size", bench_options.batch_size, "Batch size (default: the config's batch_size)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            // Non-numbers are left to the conversion, which names them.
            try {
              return std::stoll(v) >= 1 ? std::string() : "must be >= 1, got " + v;
            } catch (const std::exception&) {
              return std::string();
            }
          },
          "INT >= 1"));
  bench->add_option("--mode", bench_options.mode, "train | eval")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "eval"}));
  bench->add_option("--matmul_size", bench_options.matmul_size, "n of the n^3 fp32 matmul peak probe (0: skip)")
      ->capture_default_str();
  bench->add_flag("--json", bench_json, "Print one JSON object instead of the table");
  for (auto* sub : {info, bench}) {
    sub->callback([&, sub] {
      int status = 1;
      try {
        register_everything();
        const scenic::train::MetaOverride meta{tool_input_shape, tool_num_classes};
        status = sub == info ? scenic::train::run_info(config_path, sub->remaining(), meta)
                             : scenic::train::run_bench(config_path, sub->remaining(), meta, bench_options, bench_json);
      } catch (const std::exception& e) {
        std::string msg = e.what();
        if (dynamic_cast<const scenic::Error*>(&e) == nullptr) msg = msg.substr(0, msg.find('\n'));
        scenic::common::log_line("E", std::string("error: ") + msg);
      }
      throw CLI::RuntimeError(status);
    });
  }

  scenic::train::LaunchOptions launch_options;
  std::vector<std::string> launch_command;
  auto* launch = app.add_subcommand("launch", "Run a command as N data-parallel processes on this machine "
                                              "(torchrun's variables; docs/distributed.md)");
  launch->add_option("--nproc_per_node", launch_options.nproc_per_node, "Processes to start")->required();
  launch->add_option("--master_port", launch_options.master_port, "Rendezvous port")->capture_default_str();
  launch->add_option("--master_addr", launch_options.master_addr, "Address of node 0")->capture_default_str();
  launch->add_option("--nnodes", launch_options.nnodes, "Machines in the job")->capture_default_str();
  launch->add_option("--node_rank", launch_options.node_rank, "This machine's index")->capture_default_str();
  launch->add_option("command", launch_command, "The command, after --: scenic train ...")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*launch) return scenic::train::launch(launch_options, launch_command);
    register_everything();
    if (*train) return cmd_train(config_path, workdir, train->remaining());
    if (*eval) return cmd_eval(workdir);
    if (*list) return cmd_list(what);
    if (*plot) return cmd_plot(workdir, plot_metrics, plot_out);
  } catch (const scenic::train::PreemptedError& e) {
    scenic::common::log_line("W", e.what());
    return 128 + e.signal();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // c10 errors carry a C++ backtrace after the first line; the first line is the message.
    if (dynamic_cast<const scenic::Error*>(&e) == nullptr) msg = msg.substr(0, msg.find('\n'));
    scenic::common::log_line("E", std::string("error: ") + msg);
    return 1;
  }
  return 0;
}
