#include "scenic/train_lib/distributed_env.h"

#include <gtest/gtest.h>

#include <map>

#include "scenic/common_lib/testing.h"

namespace scenic::train {
namespace {

using Vars = std::map<std::string, std::string>;

EnvLookup env_of(const Vars& vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::string> hosts(std::initializer_list<const char*> names) { return {names.begin(), names.end()}; }

TEST(DistributedEnvTest, NoLauncherIsOneProcess) {
  const auto d = parse_distributed_env(env_of({{"PATH", "/bin"}}));
  EXPECT_EQ(d.launcher, "none");
  EXPECT_EQ(d.rank, 0);
  EXPECT_EQ(d.world_size, 1);
  EXPECT_FALSE(d.is_distributed());
  EXPECT_EQ(d.master_addr, "");
}

TEST(DistributedEnvTest, Torchrun) {
  const auto d = parse_distributed_env(env_of({{"RANK", "3"},
                                               {"WORLD_SIZE", "8"},
                                               {"LOCAL_RANK", "1"},
                                               {"LOCAL_WORLD_SIZE", "2"},
                                               {"MASTER_ADDR", "10.1.2.3"},
                                               {"MASTER_PORT", "29400"},
                                               {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                               {"TORCHELASTIC_RESTART_COUNT", "2"},
                                               // Slurm variables of the allocation torchrun runs in lose.
                                               {"SLURM_PROCID", "0"},
                                               {"SLURM_NTASKS", "4"}}));
  EXPECT_EQ(d.launcher, "torchrun");
  EXPECT_EQ(d.rank, 3);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 2);
  EXPECT_EQ(d.master_addr, "10.1.2.3");
  EXPECT_EQ(d.master_port, 29400);
  EXPECT_TRUE(d.use_agent_store);
  EXPECT_EQ(d.restart_count, 2);
  EXPECT_TRUE(d.is_distributed());
}

TEST(DistributedEnvTest, TorchrunSingleProcessNeedsNoMaster) {
  const auto d = parse_distributed_env(env_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}}));
  EXPECT_EQ(d.launcher, "torchrun");
  EXPECT_FALSE(d.is_distributed());
  EXPECT_FALSE(d.use_agent_store);
}

TEST(DistributedEnvTest, TorchrunErrors) {
  EXPECT_CONTAINS(testing::error_of([] { parse_distributed_env(env_of({{"RANK", "0"}})); }), "WORLD_SIZE is not set");
  EXPECT_CONTAINS(testing::error_of([] {
                    parse_distributed_env(env_of({{"RANK", "x1"}, {"WORLD_SIZE", "2"}}));
                  }),
                  "RANK='x1' is not an integer");
  EXPECT_CONTAINS(testing::error_of([] {
                    parse_distributed_env(env_of(
                        {{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}));
                  }),
                  "rank 2 (from torchrun) is not in [0, 2)");
  EXPECT_CONTAINS(testing::error_of([] { parse_distributed_env(env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}})); }),
                  "MASTER_ADDR and MASTER_PORT are not");
  EXPECT_CONTAINS(testing::error_of([] {
                    parse_distributed_env(env_of(
                        {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}));
                  }),
                  "master port 70000 is not in [1, 65535]");
}

TEST(DistributedEnvTest, OpenMpi) {
  const Vars vars = {{"OMPI_COMM_WORLD_RANK", "5"},      {"OMPI_COMM_WORLD_SIZE", "6"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"},
                     {"SLURM_PROCID", "0"},               {"SLURM_NTASKS", "1"}};
  // No MASTER_ADDR: the config's distributed.master_addr and port are used.
  const auto d = parse_distributed_env(env_of(vars), {std::string("node7"), 1234});
  EXPECT_EQ(d.launcher, "openmpi");
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world_size, 6);
  EXPECT_EQ(d.local_rank, 2);
  EXPECT_EQ(d.local_world_size, 3);
  EXPECT_EQ(d.master_addr, "node7");
  EXPECT_EQ(d.master_port, 1234);
  // Environment beats config; 29500 when neither gives a port.
  Vars with_env = vars;
  with_env["MASTER_ADDR"] = "head";
  const auto e = parse_distributed_env(env_of(with_env), {std::string("node7"), std::nullopt});
  EXPECT_EQ(e.master_addr, "head");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_CONTAINS(testing::error_of([&] { parse_distributed_env(env_of(vars)); }), "set MASTER_ADDR");
}

TEST(DistributedEnvTest, Slurm) {
  const auto d = parse_distributed_env(env_of({{"SLURM_PROCID", "5"},
                                               {"SLURM_NTASKS", "8"},
                                               {"SLURM_LOCALID", "1"},
                                               {"SLURM_NTASKS_PER_NODE", "4(x2)"},
                                               {"SLURM_NODELIST", "gpu[07-08]"},
                                               {"SLURM_JOB_NODELIST", "other[1-2]"},
                                               {"SLURM_JOB_ID", "1234"}}),
                                       {std::nullopt, 40000});
  EXPECT_EQ(d.launcher, "slurm");
  EXPECT_EQ(d.rank, 5);
  EXPECT_EQ(d.world_size, 8);
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.local_world_size, 4);
  EXPECT_EQ(d.master_addr, "gpu07");  // first host of SLURM_NODELIST
  EXPECT_EQ(d.master_port, 40000);    // from the config
}

TEST(DistributedEnvTest, SlurmFallsBackToJobNodelistAndMasterAddr) {
  const auto d = parse_distributed_env(
      env_of({{"SLURM_PROCID", "0"}, {"SLURM_NPROCS", "2"}, {"SLURM_JOB_NODELIST", "a12,b[1-2]"}}));
  EXPECT_EQ(d.world_size, 2);
  EXPECT_EQ(d.master_addr, "a12");
  EXPECT_EQ(d.master_port, 29500);
  const auto e = parse_distributed_env(env_of(
      {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_NODELIST", "n1"}, {"MASTER_ADDR", "m"}, {"MASTER_PORT", "7"}}));
  EXPECT_EQ(e.master_addr, "m");
  EXPECT_EQ(e.master_port, 7);
  EXPECT_CONTAINS(testing::error_of([] {
                    parse_distributed_env(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}));
                  }),
                  "neither SLURM_NODELIST nor SLURM_JOB_NODELIST");
  // One task: no rendezvous needed, no node list needed.
  EXPECT_FALSE(parse_distributed_env(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}})).is_distributed());
}

TEST(SlurmNodelistTest, Expands) {
  EXPECT_EQ(expand_slurm_nodelist("node1"), hosts({"node1"}));
  EXPECT_EQ(expand_slurm_nodelist("host[1-3,5]"), hosts({"host1", "host2", "host3", "host5"}));
  EXPECT_EQ(expand_slurm_nodelist("gpu[08-10]"), hosts({"gpu08", "gpu09", "gpu10"}));
  EXPECT_EQ(expand_slurm_nodelist("a1,b[2-3],c"), hosts({"a1", "b2", "b3", "c"}));
  EXPECT_EQ(expand_slurm_nodelist("rack-a[1-2]-ib"), hosts({"rack-a1-ib", "rack-a2-ib"}));
  EXPECT_EQ(expand_slurm_nodelist("r[1-2]-n[1-2]"), hosts({"r1-n1", "r1-n2", "r2-n1", "r2-n2"}));
  EXPECT_EQ(expand_slurm_nodelist(""), hosts({}));
}

TEST(SlurmNodelistTest, Errors) {
  EXPECT_CONTAINS(testing::error_of([] { expand_slurm_nodelist("n[1-2"); }), "unbalanced '['");
  EXPECT_CONTAINS(testing::error_of([] { expand_slurm_nodelist("n1-2]"); }), "unbalanced ']'");
  EXPECT_CONTAINS(testing::error_of([] { expand_slurm_nodelist("n[3-1]"); }), "range '3-1' goes down");
  EXPECT_CONTAINS(testing::error_of([] { expand_slurm_nodelist("n[a-b]"); }), "bad range 'a-b'");
}

}  // namespace
}  // namespace scenic::train
