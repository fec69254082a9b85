package org.pixelpost.cli.bench;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.pixelpost.data.Batches;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import org.pixelpost.train.DataParallel;
import org.pixelpost.train.GradSync;
import org.pixelpost.train.Trainer;

/**
 * {@code bench train --nproc-per-node N}, in each worker: the tiny model's training step with the
 * per-process batch, timed with the gradient all-reduce and, in the same processes at the same
 * time, without it; rank 0 reports ms per step, ms in all-reduce and its share of the step.
 */
final class DataParallelBench {
    private DataParallelBench() {}

    static Map<String, Object> run(DataParallel.Env env, String size, int batch, int iters) throws java.io.IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        try (DataParallel group = DataParallel.join(env, Duration.ofSeconds(300))) {
            Engine.seed(0);
            try (TextToImageModel m = TextToImageModel.create(size, "taef2", 64, 1.0)) {
                Batch b = TrainBench.syntheticBatch(m, batch);
                Batches data = new Batches() {
                    @Override public Batch get(long step, int slot) { return b; }
                    @Override public long size() { return batch; }
                };
                out.put("processes", group.worldSize());
                out.put("batch_per_process", batch);
                out.put("threads_per_process", Engine.threads());
                for (var row : List.of(Map.entry("latent", 0.0), Map.entry("pixel", 8.0))) {
                    Sft objective = new Sft(1, row.getValue() == 0 ? PixelTerm.off() : PixelTerm.of(row.getValue()));
                    Map<String, Object> r = new LinkedHashMap<>();
                    r.put("step_ms", time(m, data, objective, group, iters, r));
                    r.put("step_ms_without_all_reduce", time(m, data, objective, new Alone(group), iters, null));
                    out.put(row.getKey(), r);
                }
            }
        }
        return out;
    }

    /** Median ms per step over {@code iters} steps after one; with {@code r}, the all-reduce's ms per step and share too. */
    private static double time(TextToImageModel m, Batches data, Sft objective, GradSync sync, int iters, Map<String, Object> r) {
        Trainer.Options o = Trainer.Options.defaults().withSteps(iters + 1).withLr(1e-5);
        double[] t = new double[iters];
        try (Trainer trainer = new Trainer(m, data, objective, o)) {
            trainer.gradSync(sync);
            trainer.trainStep();
            sync.barrier();
            DataParallel dp = sync instanceof DataParallel d ? d : null;
            double before = dp == null ? 0 : dp.allReduceSeconds();
            long total = 0;
            for (int i = 0; i < iters; i++) {
                long t0 = System.nanoTime();
                trainer.trainStep();
                long dt = System.nanoTime() - t0;
                t[i] = dt / 1e6;
                total += dt;
            }
            if (r != null && dp != null) {
                double ms = (dp.allReduceSeconds() - before) * 1e3 / iters;
                r.put("all_reduce_ms", Math.round(ms * 10) / 10.0);
                r.put("all_reduce_share", Math.round(ms / (total / 1e6 / iters) * 1000) / 1000.0);
                r.put("gradient_mib", Math.round(m.denoiser.module().trainableParameters().values().stream()
                    .mapToLong(p -> p.numel()).sum() * 4 / 1048576.0 * 100) / 100.0);
            }
            sync.barrier();
        }
        java.util.Arrays.sort(t);
        return Math.round(t[iters / 2] * 10) / 10.0;
    }

    /** The same processes, each alone: the step without gradient exchange (the group is used only to start together). */
    private record Alone(DataParallel group) implements GradSync {
        @Override public void barrier() { group.barrier(); }
    }
}
