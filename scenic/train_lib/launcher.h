// `scenic launch`: starts the processes of a data-parallel job on one machine, without
// Python — the part of torchrun (torch.distributed.run) a single host needs.
//
//   scenic launch --nproc_per_node 2 [--master_port 29500] -- scenic train --config F --workdir D
//
// Each child gets torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// GROUP_RANK, MASTER_ADDR, MASTER_PORT (read by distributed_env.h), and, when the
// caller has not set it, OMP_NUM_THREADS = cores / processes per node so the children
// do not oversubscribe the CPU. With --nnodes/--node_rank the same command run on each
// host forms one job (RANK = node_rank * nproc_per_node + local rank); MASTER_ADDR must
// then name node 0.
//
// Behaviour (as torchrun's): SIGINT/SIGTERM sent to the launcher are forwarded once to
// every child (each child runs in its own process group, so a terminal's Ctrl-C reaches
// it once, through the launcher, and the trainer's preemption handler checkpoints and
// stops). When a child exits non-zero the others get SIGTERM, then SIGKILL after
// `grace_s`; the launcher returns that first failing child's status. 0 when all succeed.
// A command named plain `scenic` that is not on PATH runs this executable.
#pragma once

#include <string>
#include <vector>

namespace scenic::train {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double grace_s = 10;  // after a failure: SIGTERM, then SIGKILL this much later
};

// Runs `argv` (argv[0] searched in PATH) nproc_per_node times and waits for all.
// Returns 0 when all exit 0, else the first failure's exit status (128 + signal number
// for a child killed by a signal). Throws scenic::Error for bad options or when a child
// cannot be started (the ones already started are stopped first).
int launch(const LaunchOptions& options, const std::vector<std::string>& argv);

}  // namespace scenic::train
