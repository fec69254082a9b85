package org.pixelpost.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.data.Batches;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Loss;
import org.pixelpost.objective.Objective;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The training loop, on objects in memory: a model, its batches, an objective and options. Only
 * the denoiser's trainable parameters are updated. Every random draw of a step (timesteps,
 * noise, pixel rows, crops) comes from the trainer's own generator reseeded from (seed, step),
 * and the batches are a function of the step, so a run resumed from a checkpoint continues
 * exactly as the uninterrupted run would have.
 */
public final class Trainer implements AutoCloseable {
    /** How the parameters are updated. Defaults follow the paper where it gives one. */
    public record Options(long steps, int gradAccum, double lr, double adamBeta1, double adamBeta2, double adamEps, double weightDecay,
                          int warmupSteps, boolean cosine, double maxGradNorm, double emaDecay, boolean bf16, int maxNonfinite, long seed) {
        /** Each rule once, by the option's name (a training config's key). */
        public Options {
            Checks.atLeast("steps", steps, 1);
            Checks.atLeast("grad_accum", gradAccum, 1);
            Checks.positive("lr", lr);
            Checks.inHalfOpen("adam_beta1", adamBeta1, 0, 1);
            Checks.inHalfOpen("adam_beta2", adamBeta2, 0, 1);
            Checks.positive("adam_eps", adamEps);
            Checks.nonNegative("weight_decay", weightDecay);
            Checks.atLeast("warmup_steps", warmupSteps, 0);
            Checks.nonNegative("max_grad_norm", maxGradNorm);
            Checks.inHalfOpen("ema_decay", emaDecay, 0, 1);
            Checks.atLeast("max_nonfinite", maxNonfinite, 0);
        }

        public static Options defaults() {
            return new Options(1000, 1, 2e-5, 0.9, 0.999, 1e-8, 5e-6, 0, false, 1.0, 0, false, 5, 0);
        }

        public Options withSteps(long v) { return new Options(v, gradAccum, lr, adamBeta1, adamBeta2, adamEps, weightDecay, warmupSteps, cosine, maxGradNorm, emaDecay, bf16, maxNonfinite, seed); }
        public Options withLr(double v) { return new Options(steps, gradAccum, v, adamBeta1, adamBeta2, adamEps, weightDecay, warmupSteps, cosine, maxGradNorm, emaDecay, bf16, maxNonfinite, seed); }
        public Options withSeed(long v) { return new Options(steps, gradAccum, lr, adamBeta1, adamBeta2, adamEps, weightDecay, warmupSteps, cosine, maxGradNorm, emaDecay, bf16, maxNonfinite, v); }
        public Options withEmaDecay(double v) { return new Options(steps, gradAccum, lr, adamBeta1, adamBeta2, adamEps, weightDecay, warmupSteps, cosine, maxGradNorm, v, bf16, maxNonfinite, seed); }
    }

    /** What the loop tells its caller. */
    public interface Listener {
        /** After every optimizer step that was taken. */
        default void step(Trainer trainer, long step, Map<String, Double> terms) throws IOException {}

        default void message(String text) {}
    }

    /**
     * Thrown by {@link #run()} when a stop was requested ({@link #requestStop}): the step in flight was
     * finished and, where the trainer has a checkpointer, checkpointed.
     */
    public static final class Stopped extends RuntimeException {
        public final long step;
        public final Path checkpoint;
        public final String reason;

        Stopped(long step, Path checkpoint, String reason) {
            super("stopped by " + reason + " after step " + step + (checkpoint == null ? "" : "; checkpoint " + checkpoint));
            this.step = step;
            this.checkpoint = checkpoint;
            this.reason = reason;
        }
    }

    private final TextToImageModel model;
    private final Batches batches;
    private final Objective objective;
    private final Options o;
    private final Map<String, Tensor> params;
    private final java.util.List<org.pixelpost.nn.Lora.Adapter> adapters; // found once, like params: their dropout draws from each micro-batch's generator
    private final AdamW opt;
    private final Ema ema;
    private final LrSchedule lr;
    private final Generator gen;
    private StepContext ctx;
    private GradSync gradSync = GradSync.LOCAL;
    private Listener listener = new Listener() {};
    private Checkpointer checkpointer;
    private final FlatParameters flat;
    private MicroBatchLanes lanes; // null: micro-batches one after another
    private long step;
    private int nonfinite;
    private volatile String stopRequest;
    private boolean stopAgreed;

    public Trainer(TextToImageModel model, Batches batches, Objective objective, Options options) {
        this.model = model;
        this.batches = batches;
        this.objective = objective;
        this.o = options;
        this.params = model.denoiser.module().trainableParameters();
        this.adapters = java.util.List.copyOf(org.pixelpost.nn.Lora.adapters(model.denoiser.module()).values());
        if (params.isEmpty()) throw new IllegalArgumentException("the denoiser has no trainable parameters");
        for (Map.Entry<String, Tensor> e : params.entrySet())
            if (e.getValue().scalar_type().intern() != torch.ScalarType.Float)
                throw new IllegalArgumentException("the denoiser's weights are " + e.getValue().scalar_type().intern() + " (" + e.getKey()
                    + "); training keeps fp32 weights: load them in fp32 and use bf16 autocast (--bf16)");
        this.flat = new FlatParameters(params);
        this.opt = new AdamW(flat, o.adamBeta1(), o.adamBeta2(), o.adamEps(), o.weightDecay());
        this.ema = o.emaDecay() > 0 ? new Ema(flat, o.emaDecay()) : null;
        this.lr = new LrSchedule(o.lr(), o.warmupSteps(), (int) o.steps(), o.cosine());
        this.gen = Generator.seeded(o.seed());
        this.ctx = new StepContext(model.denoiser, model.noiseSchedule(), model.predictionType(), model::decodeLatents, gen);
    }

    public Trainer listener(Listener l) { this.listener = l; return this; }
    public Trainer gradSync(GradSync s) { this.gradSync = s; return this; }
    public Trainer checkpointer(Checkpointer c) { this.checkpointer = c; return this; }

    /**
     * The pixel term decodes with {@code decoder} instead of the model's own autoencoder (a cheaper
     * decoder over the same latents, such as TAESD for SD latents).
     */
    public Trainer pixelDecoder(Autoencoder decoder) {
        if (decoder.latentChannels() != model.autoencoder.latentChannels())
            throw new IllegalArgumentException("pixel decoder " + decoder.name() + " takes " + decoder.latentChannels() + " latent channels, the model has "
                + model.autoencoder.latentChannels());
        this.ctx = new StepContext(ctx.model(), ctx.schedule(), ctx.predictionType(), z -> model.decodeLatentsWith(decoder, z), gen);
        return this;
    }

    /**
     * Runs {@code n} micro-batches of each step at once, each on its own thread with the CPU threads
     * shared among them (see {@link MicroBatchLanes}); 1 runs them one after another. {@code n} must
     * divide the micro-batches per step. On the CPU only, and not with LoRA adapters (a DPO reference
     * switches them off for its forward, which is state on the shared model).
     */
    public Trainer concurrentMicroBatches(int n) {
        MicroBatchLanes.check(n, o.gradAccum(), !adapters.isEmpty(), model.denoiser.module().gradientCheckpointing(), flat.data().device().is_cpu());
        if (lanes != null) lanes.close();
        lanes = null;
        if (n > 1) lanes = new MicroBatchLanes(n, List.copyOf(params.values()), o.seed());
        return this;
    }

    public long step() { return step; }

    /** Asks {@link #run()} to stop after the step in flight (safe to call from a signal handler's thread). */
    public void requestStop(String reason) {
        stopRequest = reason;
    }
    public Options options() { return o; }
    public TextToImageModel model() { return model; }
    public Objective objective() { return objective; }

    /** Runs the remaining steps; returns the last step's terms. */
    public Map<String, Double> run() throws IOException {
        Map<String, Double> last = Map.of();
        if (gradSync.worldSize() > 1) startTogether();
        while (step < o.steps()) {
            if (stopRequest != null && gradSync.worldSize() == 1)
                throw new Stopped(step, checkpointer != null && step > 0 ? checkpoint() : null, stopRequest);
            Map<String, Double> terms = trainStep();
            if (terms == null) { // a non-finite step was skipped; a checkpoint due now is still written
                if (checkpointer != null && checkpointer.due(step, o.steps())) checkpoint();
                continue;
            }
            last = terms;
            listener.step(this, step, terms);
            if (stopAgreed && step < o.steps()) throw new Stopped(step, checkpointer != null ? checkpoint() : null, stopRequest != null ? stopRequest : "another process's stop");
            if (checkpointer != null && checkpointer.due(step, o.steps())) checkpoint();
        }
        return last;
    }

    /** Every process starts from rank 0's weights, optimizer state and EMA (identical already after a resume; made sure of here). */
    private void startTogether() {
        List<Tensor> state = new java.util.ArrayList<>(List.of(flat.data()));
        state.addAll(opt.buffers());
        if (ema != null) state.add(ema.buffer());
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            gradSync.broadcast(state);
        }
    }

    /**
     * One optimizer step over {@code gradAccum} micro-batches on each process. Returns its terms
     * (averaged over the processes), or null when the loss or gradient was not finite on some
     * process and every process skipped the update.
     */
    public Map<String, Double> trainStep() {
        step++;
        Map<String, Double> terms = new LinkedHashMap<>();
        boolean finite = true;
        double gradNorm = Double.NaN;
        try (Scope s = Scope.open()) {
            opt.zeroGrad();
            int perPass = lanes == null ? 1 : lanes.lanes();
            for (int micro = 0; micro < o.gradAccum() && finite; micro += perPass) {
                if (lanes != null) {
                    finite = concurrently(micro, terms);
                    continue;
                }
                int slot = gradSync.slot(micro);
                Generator g = gen.reseed(Generator.mix(o.seed(), step)).shard(slot, gradSync.slots(o.gradAccum()));
                org.pixelpost.nn.Lora.dropoutFrom(adapters, g); // the adapters' dropout masks are the step's draws too
                Loss loss = microBatchLoss(ctx, g, batches.get(step, slot).on(flat.data())); // data is kept on the CPU
                finite = Double.isFinite(Tensors.item(loss.loss()));
                if (!finite) break;
                loss.loss().div(Tensors.s(o.gradAccum())).backward();
                addTerms(terms, loss.terms());
            }
            finite = gradSync.averageGradients(flat, finite);
            if (finite) {
                gradNorm = flat.clipGradNorm(o.maxGradNorm());
                finite = Double.isFinite(gradNorm);
            }
            if (finite) {
                opt.step(lr.at(step));
                if (ema != null) ema.update();
            }
            opt.zeroGrad();
        }
        if (finite) stopAgreed = gradSync.meanTerms(terms, stopRequest != null); // every process stops after the same step
        if (!finite) {
            nonfinite++;
            listener.message("step " + step + ": non-finite loss or gradient, update skipped (" + nonfinite + " of at most " + o.maxNonfinite() + ")");
            if (nonfinite > o.maxNonfinite())
                throw new IllegalStateException("stopped at step " + step + ": " + nonfinite + " non-finite steps (limit --max-nonfinite " + o.maxNonfinite() + ")");
            return null;
        }
        terms.put("lr", lr.at(step));
        terms.put("grad_norm", gradNorm);
        return terms;
    }

    /** Micro-batches {@code first} .. on the lanes at once; false where a loss was not finite. */
    private boolean concurrently(int first, Map<String, Double> terms) {
        int n = lanes.lanes();
        List<Batch> data = new java.util.ArrayList<>(); // read here: a Batches need not be thread-safe
        for (int j = 0; j < n; j++) data.add(batches.get(step, gradSync.slot(first + j)).on(flat.data()));
        StepContext c = ctx;
        List<Map<String, Double>> out = lanes.run(n, o.gradAccum(), (lane, g) -> {
            int slot = gradSync.slot(first + lane);
            return microBatchLoss(c, g.reseed(Generator.mix(o.seed(), step)).shard(slot, gradSync.slots(o.gradAccum())), data.get(lane));
        });
        for (Map<String, Double> t : out) {
            if (t == null) return false;
            addTerms(terms, t);
        }
        return true;
    }

    /** The loss of a micro-batch, its draws from {@code g} (reseeded for the micro-batch's slot). */
    private Loss microBatchLoss(StepContext c, Generator g, Batch b) {
        try (Autocast a = Autocast.bf16(o.bf16(), flat.data().device().type())) {
            return objective.loss(c.withGenerator(g), b);
        }
    }

    /** A micro-batch's terms into the step's, as a mean over the micro-batches. */
    private void addTerms(Map<String, Double> terms, Map<String, Double> micro) {
        micro.forEach((k, v) -> terms.merge(k, v / o.gradAccum(), Double::sum));
    }

    /** Mean terms over {@code batches} without gradients, with timesteps and noise from {@code seed} (the same at every call). */
    public Map<String, Double> evaluate(List<Batch> batches, long seed) {
        Map<String, Double> sum = new LinkedHashMap<>();
        try (Scope s = Scope.open(); var g = Tensors.noGrad(); Generator evalGen = Generator.seeded(seed)) {
            StepContext c = ctx.withGenerator(evalGen);
            for (Batch b : batches) objective.loss(c, b.on(flat.data())).terms().forEach((k, v) -> sum.merge(k, v, Double::sum));
        }
        sum.replaceAll((k, v) -> v / batches.size());
        return sum;
    }

    /** Writes a checkpoint of the current step with the trainer's checkpointer. */
    public Path checkpoint() throws IOException {
        if (checkpointer == null) throw new IllegalStateException("no checkpointer set");
        if (gradSync.rank() != 0) return checkpointer.path(step); // rank 0 writes it
        Map<String, Map<String, Tensor>> parts = new LinkedHashMap<>();
        parts.put("denoiser", params);
        parts.put("optimizer", opt.state());
        if (ema != null) parts.put("ema", ema.weights());
        ObjectNode st = new ObjectMapper().createObjectNode();
        // data order, flips, noise and timesteps derive from (seed, step): the step is the RNG state
        st.put("step", step).put("nonfinite", nonfinite).put("seed", o.seed());
        try (Scope s = Scope.open()) {
            return checkpointer.save(step, parts, st);
        }
    }

    /** Continues from a checkpoint: weights, optimizer moments, EMA, step and the count of skipped steps. */
    public void resume(Path checkpoint) throws IOException {
        try (Scope s = Scope.open()) {
            Checkpointer.Loaded c = Checkpointer.read(checkpoint, List.of("denoiser", "optimizer", "ema"));
            JsonNode st = c.state();
            if (!c.parts().containsKey("denoiser") || !c.parts().containsKey("optimizer"))
                throw new BadFileException(checkpoint, "incomplete checkpoint (denoiser or optimizer state missing)");
            Path stateFile = checkpoint.resolve(Checkpointer.STATE);
            if (st == null || !st.isObject()) throw new BadFileException(stateFile, "not a JSON object (empty or damaged checkpoint state)");
            long at, skipped;
            try {
                at = Checks.integer("step", st.get("step"), 0);
                skipped = Checks.integer("nonfinite", st.get("nonfinite"), 0);
                if (st.has("seed") && Checks.integer("seed", st.get("seed"), Long.MIN_VALUE) != o.seed())
                    throw new InvalidValueException("seed", st.get("seed") + " differs from this run's seed " + o.seed()
                        + "; resume with the checkpoint's own config (--config RUN/config.json)");
            } catch (InvalidValueException e) {
                throw new BadFileException(stateFile, e.getMessage());
            }
            if (at > o.steps()) throw new BadFileException(stateFile, "step " + at + " is past this run's " + o.steps() + " steps");
            try {
                loadInto(params, c.parts().get("denoiser"), checkpoint);
                opt.load(c.parts().get("optimizer"));
                if (ema != null) {
                    if (!c.parts().containsKey("ema")) throw new BadFileException(checkpoint, "no EMA weights, but the run uses EMA");
                    ema.load(c.parts().get("ema"));
                }
            } catch (IllegalArgumentException e) {
                throw new BadFileException(checkpoint, "does not fit this model (" + e.getMessage() + ")");
            }
            step = at;
            nonfinite = (int) skipped;
        }
    }

    /** Puts the EMA weights (where there are) into the model, as the final weights. */
    public void applyEma() {
        if (ema != null) loadInto(params, ema.weights(), null);
    }

    private static void loadInto(Map<String, Tensor> params, Map<String, Tensor> values, Path source) {
        try (var g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                Tensor v = values.get(e.getKey());
                if (v == null) throw new IllegalArgumentException((source == null ? "" : source + ": ") + "no value for " + e.getKey());
                if (!java.util.Arrays.equals(Tensors.shape(v), Tensors.shape(e.getValue())))
                    throw new IllegalArgumentException(e.getKey() + " has shape " + java.util.Arrays.toString(Tensors.shape(v)) + ", the model "
                        + java.util.Arrays.toString(Tensors.shape(e.getValue())));
                e.getValue().copy_(v);
            }
        }
    }

    @Override
    public void close() {
        opt.close();
        if (ema != null) ema.close();
        if (lanes != null) lanes.close();
        flat.close();
        gen.close();
    }
}
