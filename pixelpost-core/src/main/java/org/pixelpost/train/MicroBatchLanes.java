package org.pixelpost.train;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.objective.Loss;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Several micro-batches of a step at once, one per thread ("lane"), each lane running libtorch's
 * CPU kernels on its share of the cores. On a CPU a small model's step is mostly products of a few
 * hundred rows and elementwise operations below libtorch's parallel grain, which one core runs
 * while the others wait; whole micro-batches side by side keep every core busy.
 *
 * <p>The result does not depend on the lanes: each micro-batch keeps its slot's data and draws,
 * lanes compute their gradients with {@code torch::autograd::grad} (nothing is accumulated
 * concurrently), and the gradients are added into the parameters' in slot order, as one
 * micro-batch after another would add them. Kernels on fewer threads may round differently
 * (reductions split differently), so the weights agree with the sequential run to float precision,
 * not bit for bit; with the same lanes a run repeats exactly.
 */
final class MicroBatchLanes implements AutoCloseable {
    /**
     * The rules for running {@code n} micro-batches of a step at once, checked once for the library
     * and the training config alike: {@code n} divides the step's {@code gradAccum} micro-batches,
     * and more than one needs a denoiser without LoRA adapters (a DPO reference switches them off on
     * the shared model) or gradient checkpointing, on the CPU.
     */
    static void check(int n, int gradAccum, boolean lora, boolean checkpointing, boolean cpu) {
        String key = "concurrent_micro_batches";
        org.pixelpost.io.check.Checks.atLeast(key, n, 1);
        if (gradAccum % n != 0) throw new org.pixelpost.io.check.InvalidValueException(key, n + " does not divide grad_accum " + gradAccum);
        if (n == 1) return;
        if (lora) throw new org.pixelpost.io.check.InvalidValueException(key, "does not work with LoRA adapters");
        if (checkpointing) throw new org.pixelpost.io.check.InvalidValueException(key, "does not work with gradient_checkpointing");
        if (!cpu) throw new org.pixelpost.io.check.InvalidValueException(key, "is for the CPU");
    }

    /*
     * Memory: a lane holds its gradients (as large as the trainable parameters) from its backward
     * until its turn to add them, so up to one such copy per lane at a time.
     */

    /** One micro-batch's loss, computed on a lane with {@code gen} as the step's generator. */
    @FunctionalInterface
    interface Work {
        Loss loss(int lane, Generator gen);
    }

    private final ExecutorService pool;
    private final List<Generator> gens = new ArrayList<>();
    private final List<Tensor> params;
    private final TensorVector inputs;

    MicroBatchLanes(int lanes, List<Tensor> params, long seed) {
        this.params = params;
        this.inputs = new TensorVector(params.toArray(new Tensor[0]));
        for (int i = 0; i < lanes; i++) gens.add(Generator.seeded(seed));
        try {
            pool = Engine.threadPool(lanes, Math.max(1, Engine.threads() / lanes), "micro-batch");
        } catch (RuntimeException e) {
            gens.forEach(Generator::close);
            throw e;
        }
    }

    int lanes() {
        return gens.size();
    }

    /**
     * Runs {@code work} for lanes 0 .. n-1 at once and adds each lane's gradient of its loss divided
     * by {@code divisor} (the micro-batches per step, as the sequential loop divides) into the
     * parameters' gradients, lane 0's first. Returns each lane's terms, or null in a lane whose loss
     * was not finite (its gradient is not added).
     */
    List<Map<String, Double>> run(int n, int divisor, Work work) {
        if (n > lanes()) throw new IllegalArgumentException(n + " micro-batches on " + lanes() + " lanes");
        List<CountDownLatch> added = new ArrayList<>();
        for (int j = 0; j <= n; j++) added.add(new CountDownLatch(j == 0 ? 0 : 1));
        List<Future<Map<String, Double>>> done = new ArrayList<>();
        for (int j = 0; j < n; j++) {
            int lane = j;
            done.add(pool.submit(() -> {
                try (Scope s = Scope.open()) {
                    Loss loss = work.loss(lane, gens.get(lane));
                    boolean finite = Double.isFinite(Tensors.item(loss.loss()));
                    TensorVector grads = finite
                        ? torch.grad(new TensorVector(loss.loss().div(Tensors.s(divisor))), inputs, new TensorVector(), new BoolOptional(false), false, true)
                        : null;
                    added.get(lane).await(); // the lanes before this one have added theirs
                    if (grads != null)
                        try (var g = Tensors.noGrad()) {
                            for (int i = 0; i < params.size(); i++)
                                if (grads.get(i).defined()) params.get(i).grad().add_(grads.get(i));
                        }
                    return finite ? loss.terms() : null;
                } finally {
                    added.get(lane + 1).countDown();
                }
            }));
        }
        return Engine.awaitAll(done);
    }

    @Override
    public void close() {
        pool.shutdown(); // no task is in flight: run() waits for all of its own
        try {
            if (!pool.awaitTermination(60, java.util.concurrent.TimeUnit.SECONDS)) pool.shutdownNow();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        gens.forEach(Generator::close);
    }
}
