// Who am I in a multi-process job: rank, world size, local rank and the rendezvous
// address, read from the variables the standard launchers set. Pure functions (no
// network), so every launcher's conventions are unit-tested.
//
// Scenic gets this from JAX (`jax.process_index()`, `jax.process_count()`, set up by
// the TPU/Borg runtime); LibTorch has no such runtime, so we read what the launchers
// export, in this order of precedence:
//   1. torchrun / `scenic launch`: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//      MASTER_ADDR, MASTER_PORT (+ TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT);
//   2. Open MPI (mpirun): OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE;
//      the rendezvous address comes from MASTER_ADDR (env) or `distributed.master_addr`;
//   3. Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE;
//      the master is the first host of SLURM_NODELIST (else SLURM_JOB_NODELIST) unless
//      MASTER_ADDR is set.
// Open MPI comes before Slurm because `mpirun` inside an sbatch allocation sees both.
// The port: MASTER_PORT (env) wins, then `distributed.port`, then 29500 (torchrun's).
// None of them set: world size 1, no process group at all.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace scenic::train {

// Looks up one environment variable; nullopt when unset. `getenv` in production,
// a map in tests.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

struct DistributedEnv {
  std::string launcher = "none";  // "torchrun", "openmpi", "slurm" or "none"
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // index of this process on its host: picks the GPU
  int local_world_size = 1;  // processes on this host (0 when the launcher does not say)
  std::string master_addr;   // empty when world_size == 1
  int master_port = 0;
  // torchrun's agent already serves a TCPStore at MASTER_ADDR:MASTER_PORT: every rank,
  // rank 0 included, connects as a client (torch.distributed does the same).
  bool use_agent_store = false;
  int restart_count = 0;  // torchrun's TORCHELASTIC_RESTART_COUNT (keys the store prefix)
  bool is_distributed() const { return world_size > 1; }
};

// What the config may add (`distributed.master_addr`, `distributed.port`).
struct RendezvousDefaults {
  std::optional<std::string> master_addr;
  std::optional<int> port;
};

// Reads the variables above. Throws scenic::Error naming the variable when a value is
// not an integer, out of range (rank >= world size, ...), or when a multi-process job
// has no way to find its master (Open MPI without MASTER_ADDR, Slurm without a node list).
DistributedEnv parse_distributed_env(const EnvLookup& env, const RendezvousDefaults& defaults = {});

// Expands a Slurm host list: "node[1-3,5]" -> node1 node2 node3 node5; zero padding is
// kept ("gpu[08-10]" -> gpu08 gpu09 gpu10); entries are comma-separated outside brackets
// ("a1,b[2-3]"); a suffix after the brackets and several bracket groups expand as a
// product ("r[1-2]-n[1-2]" -> r1-n1 r1-n2 r2-n1 r2-n2). Throws scenic::Error on
// unbalanced brackets or a bad range.
std::vector<std::string> expand_slurm_nodelist(const std::string& nodelist);

}  // namespace scenic::train
