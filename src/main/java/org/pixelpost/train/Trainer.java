package org.pixelpost.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.data.EncodedSet;
import org.pixelpost.data.ImageCaptionSet;
import org.pixelpost.data.PreferencePairSet;
import org.pixelpost.diffusion.NoiseSchedule;
import org.pixelpost.diffusion.Sampler;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.BadFileException;
import org.pixelpost.io.Images;
import org.pixelpost.io.SafeTensors;
import org.pixelpost.model.TextToImageModel;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The training loop. Every source of randomness in a step (data order, flips, timesteps, noise)
 * is a function of the run's seed and the step number, so a run resumed from a checkpoint
 * continues exactly as the uninterrupted run would have.
 */
public final class Trainer {
    /** What a run tells its caller while it goes. */
    public interface Listener {
        void step(long step, long total, Map<String, Double> terms);

        void message(String text);
    }

    /** The outcome: where the final model is, the last step, and the wall time. */
    public record Summary(Path model, long steps, double seconds, Map<String, Double> lastTerms) {}

    private final TrainConfig c;
    private final Listener listener;
    private final Path out;

    public Trainer(TrainConfig config, Listener listener) {
        this.c = config;
        this.listener = listener;
        this.out = Paths.get(config.out());
    }

    /** The default folder for encoded data: {@code $PIXELPOST_CACHE} or the user cache. */
    public static Path cacheDir() {
        String env = System.getenv("PIXELPOST_CACHE");
        if (env != null && !env.isBlank()) return Paths.get(env);
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Paths.get(xdg) : Paths.get(System.getProperty("user.home"), ".cache");
        return base.resolve("pixelpost").resolve("encoded");
    }

    public Summary run() throws IOException {
        long started = System.nanoTime();
        Engine.start();
        Path resumeFrom = resolveResume();
        if (resumeFrom == null && Files.isDirectory(out.resolve("checkpoints")) && hasCheckpoints())
            throw new IOException(out + ": holds checkpoints of an earlier run; pass --resume latest to continue it, or choose another --out");
        Files.createDirectories(out);
        AtomicFiles.writeString(out.resolve("config.json"), c.toJson());

        try (TextToImageModel m = TextToImageModel.load(Paths.get(c.init()))) {
            DiT model = m.denoiser;
            DiT reference = null;
            if (c.objective().equals("dpo")) {
                reference = DiT.load(Paths.get(c.reference() != null ? c.reference() : c.init()).resolve("denoiser"));
                reference.freeze();
            }
            NoiseSchedule schedule = m.scheduler.schedule();
            double scale = m.latentScale;
            UnaryOperator<Tensor> decode = lat -> m.autoencoder.decode(lat.div(Tensors.s(scale)));
            Steps.Options opts = Steps.Options.of(c, schedule, decode);
            EncodedSet.OnBadImage onBad = c.onBadImage().equals("fail") ? EncodedSet.OnBadImage.FAIL : EncodedSet.OnBadImage.SKIP;

            listener.message("encoding data (cached after the first run)");
            Data data = Data.load(c.preference(), Paths.get(c.data()), m, onBad);
            Data val = c.valData() != null ? Data.load(c.preference(), Paths.get(c.valData()), m, onBad) : null;
            long perStep = (long) c.batchSize() * c.gradAccum();
            long total = c.epochs() > 0 ? c.epochs() * ((data.size() + perStep - 1) / perStep) : c.steps();

            Map<String, Tensor> params = model.parameters();
            AdamW opt = new AdamW(params, c.adamBeta1(), c.adamBeta2(), c.adamEps(), c.weightDecay());
            Ema ema = c.emaDecay() > 0 ? new Ema(params, c.emaDecay()) : null;
            LrSchedule lr = new LrSchedule(c.lr(), c.warmupSteps(), (int) total, c.lrSchedule().equals("cosine"));
            long step = 0;
            int nonfinite = 0;
            if (resumeFrom != null) {
                JsonNode st = new ObjectMapper().readTree(resumeFrom.resolve("trainer.json").toFile());
                step = st.get("step").asLong();
                nonfinite = st.path("nonfinite").asInt();
                model.load(SafeTensors.read(resumeFrom.resolve("denoiser.safetensors")), resumeFrom);
                opt.load(SafeTensors.read(resumeFrom.resolve("optimizer.safetensors")));
                if (ema != null) ema.load(SafeTensors.read(resumeFrom.resolve("ema.safetensors")));
                truncateMetrics(step);
                listener.message("resumed from " + resumeFrom + " at step " + step);
            } else {
                Files.deleteIfExists(out.resolve("metrics.jsonl"));
            }

            Map<String, Double> last = Map.of();
            Map<String, Double> window = new LinkedHashMap<>();
            int windowSteps = 0;
            try (TensorBoard tb = new TensorBoard(out.resolve("tensorboard"))) {
                while (step < total) {
                    step++;
                    Map<String, Double> terms = new LinkedHashMap<>();
                    boolean finite = true;
                    double gradNorm;
                    try (Scope s = Scope.open()) {
                        Engine.seed(mix(c.seed(), step));
                        opt.zeroGrad();
                        for (int micro = 0; micro < c.gradAccum(); micro++) {
                            long first = (step - 1) * perStep + (long) micro * c.batchSize();
                            Steps.Result r = forward(model, reference, opts, data, first, c.batchSize());
                            double lv = Tensors.item(r.loss());
                            if (!Double.isFinite(lv)) {
                                finite = false;
                                break;
                            }
                            r.loss().div(Tensors.s(c.gradAccum())).backward();
                            r.terms().forEach((k, v) -> terms.merge(k, v / c.gradAccum(), Double::sum));
                        }
                        gradNorm = finite ? clip(params, c.maxGradNorm()) : Double.NaN;
                        if (finite && !Double.isFinite(gradNorm)) finite = false;
                        if (finite) {
                            opt.step(lr.at(step));
                            if (ema != null) ema.update();
                        }
                        opt.zeroGrad();
                    }
                    if (!finite) {
                        nonfinite++;
                        listener.message("step " + step + ": non-finite loss or gradient, update skipped (" + nonfinite + " of at most " + c.maxNonfinite() + ")");
                        if (nonfinite > c.maxNonfinite())
                            throw new IllegalStateException("stopped at step " + step + ": " + nonfinite + " non-finite steps (limit --max-nonfinite " + c.maxNonfinite() + ")");
                        continue;
                    }
                    terms.put("lr", lr.at(step));
                    terms.put("grad_norm", gradNorm);
                    last = terms;
                    terms.forEach((k, v) -> window.merge(k, v, Double::sum));
                    windowSteps++;
                    if (step % c.logEvery() == 0 || step == total) {
                        Map<String, Double> mean = new LinkedHashMap<>();
                        int n = windowSteps;
                        window.forEach((k, v) -> mean.put(k, v / n));
                        if (val != null && c.valEvery() > 0 && (step % c.valEvery() == 0 || step == total)) mean.putAll(validate(model, reference, opts, val));
                        writeMetrics(step, mean, started);
                        tb.scalars(step, mean);
                        window.clear();
                        windowSteps = 0;
                    }
                    listener.step(step, total, terms);
                    if (c.sampleEvery() > 0 && (step % c.sampleEvery() == 0 || step == total) && !c.samplePrompts().isEmpty())
                        sample(m, step);
                    if ((c.checkpointEvery() > 0 && step % c.checkpointEvery() == 0) || step == total)
                        checkpoint(step, nonfinite, model, opt, ema);
                }
            }
            // the final model folder: EMA weights where there are, otherwise the trained ones
            if (ema != null) model.load(ema.weights(), out);
            Path finalModel = out.resolve("model");
            m.save(finalModel);
            return new Summary(finalModel, step, (System.nanoTime() - started) / 1e9, last);
        }
    }

    /** The loss of the micro-batch that starts at sample position {@code first}. */
    private Steps.Result forward(DiT model, DiT reference, Steps.Options opts, Data data, long first, int b) {
        long[] idx = new long[b];
        boolean[] flip = new boolean[b];
        for (int k = 0; k < b; k++) {
            long pos = first + k;
            idx[k] = data.order(c.seed(), pos);
            flip[k] = c.flip() && new Random(mix(c.seed() ^ 0xF11BL, pos)).nextBoolean();
        }
        boolean bf16 = c.bf16();
        if (bf16) {
            torch.set_autocast_cache_enabled(false); // cached casts of the weights would go stale after an update
            torch.set_autocast_dtype(torch.DeviceType.CPU, torch.ScalarType.BFloat16);
            torch.set_autocast_enabled(torch.DeviceType.CPU, true);
        }
        try {
            if (data.losers == null) {
                Tensor[] bt = data.winners.batch(idx, flip);
                return Steps.sft(model, opts, bt[0], bt[1], bt[2]);
            }
            Tensor[] w = data.winners.batch(idx, flip), l = data.losers.batch(idx, flip);
            return Steps.preference(model, reference, opts, w[0], l[0], w[1], w[2]);
        } finally {
            if (bf16) {
                torch.set_autocast_enabled(torch.DeviceType.CPU, false);
            }
        }
    }

    /** Held-out terms with fixed noise and timesteps (seeded the same at every validation). */
    private Map<String, Double> validate(DiT model, DiT reference, Steps.Options opts, Data val) {
        Map<String, Double> sum = new LinkedHashMap<>();
        int batches = 0;
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Engine.seed(0x7A11DL);
            for (long first = 0; first < val.size(); first += c.batchSize()) {
                int b = (int) Math.min(c.batchSize(), val.size() - first);
                long[] idx = java.util.stream.LongStream.range(first, first + b).toArray();
                Steps.Result r;
                if (val.losers == null) {
                    Tensor[] bt = val.winners.batch(idx, null);
                    r = Steps.sft(model, opts, bt[0], bt[1], bt[2]);
                } else {
                    Tensor[] w = val.winners.batch(idx, null), l = val.losers.batch(idx, null);
                    r = Steps.preference(model, reference, opts, w[0], l[0], w[1], w[2]);
                }
                r.terms().forEach((k, v) -> sum.merge("val_" + k, v, Double::sum));
                batches++;
            }
        }
        int n = batches;
        sum.replaceAll((k, v) -> v / n);
        return sum;
    }

    private void sample(TextToImageModel m, long step) throws IOException {
        Sampler sampler = new Sampler(m.denoiser, m.autoencoder, m.textEncoder, m.scheduler, m.imageSize, m.latentScale);
        long[] seeds = new long[c.samplePrompts().size()];
        Tensor images = sampler.sample(c.samplePrompts(), seeds, new Sampler.Settings(c.sampleSteps(), c.sampleGuidance(), 0), null);
        List<java.awt.image.BufferedImage> tiles = new ArrayList<>();
        for (int i = 0; i < seeds.length; i++) tiles.add(Images.toImage(images.select(0, i)));
        Images.writePng(out.resolve("samples").resolve(String.format("step-%06d.png", step)), Images.grid(tiles, Math.min(8, tiles.size()), 2));
    }

    /** Writes {@code checkpoints/step-N/} under a temporary name, renames it, and keeps the last K. */
    private void checkpoint(long step, int nonfinite, DiT model, AdamW opt, Ema ema) throws IOException {
        Path dir = out.resolve("checkpoints");
        Files.createDirectories(dir);
        String name = String.format("step-%06d", step);
        Path tmp = dir.resolve("." + name + ".tmp"), fin = dir.resolve(name);
        AtomicFiles.deleteTree(tmp);
        Files.createDirectories(tmp);
        SafeTensors.write(tmp.resolve("denoiser.safetensors"), model.parameters());
        SafeTensors.write(tmp.resolve("optimizer.safetensors"), opt.state());
        if (ema != null) SafeTensors.write(tmp.resolve("ema.safetensors"), ema.weights());
        ObjectNode st = new ObjectMapper().createObjectNode();
        // data order, flips, noise and timesteps derive from (seed, step): the step is the RNG state
        st.put("step", step).put("nonfinite", nonfinite).put("seed", c.seed()).put("samples_seen", step * c.batchSize() * c.gradAccum());
        AtomicFiles.writeString(tmp.resolve("trainer.json"), st.toPrettyString());
        AtomicFiles.deleteTree(fin);
        Files.move(tmp, fin, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        List<Path> all = checkpoints();
        for (int i = 0; i < all.size() - Math.max(1, c.keepCheckpoints()); i++) AtomicFiles.deleteTree(all.get(i));
    }

    private List<Path> checkpoints() throws IOException {
        Path dir = out.resolve("checkpoints");
        if (!Files.isDirectory(dir)) return List.of();
        try (var s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().matches("step-\\d+") && Files.isRegularFile(p.resolve("trainer.json")))
                .sorted(Comparator.comparing(p -> p.getFileName().toString())).toList();
        }
    }

    private boolean hasCheckpoints() throws IOException {
        return !checkpoints().isEmpty();
    }

    private Path resolveResume() throws IOException {
        if (c.resume() == null || c.resume().isBlank()) return null;
        if (c.resume().equals("latest")) {
            List<Path> all = checkpoints();
            if (all.isEmpty()) throw new BadFileException(out.resolve("checkpoints"), "no checkpoint to resume from");
            return all.get(all.size() - 1);
        }
        Path p = Paths.get(c.resume());
        if (!Files.isRegularFile(p.resolve("trainer.json"))) throw new BadFileException(p, "not a checkpoint folder (no trainer.json)");
        return p;
    }

    private void writeMetrics(long step, Map<String, Double> terms, long started) throws IOException {
        ObjectNode j = new ObjectMapper().createObjectNode();
        j.put("step", step);
        j.put("time", Math.round((System.nanoTime() - started) / 1e7) / 100.0);
        terms.forEach(j::put);
        j.put("rss_mib", Math.round(org.bytedeco.javacpp.Pointer.physicalBytes() / 1048576.0 * 10) / 10.0);
        Files.writeString(out.resolve("metrics.jsonl"), j + "\n", java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    }

    /** After a resume, metrics written past the checkpoint by the interrupted run are dropped. */
    private void truncateMetrics(long step) throws IOException {
        Path f = out.resolve("metrics.jsonl");
        if (!Files.isRegularFile(f)) return;
        ObjectMapper om = new ObjectMapper();
        List<String> keep = new ArrayList<>();
        for (String line : Files.readAllLines(f)) {
            try {
                if (om.readTree(line).path("step").asLong() <= step) keep.add(line);
            } catch (IOException e) {
                break; // a line cut short by the kill
            }
        }
        AtomicFiles.writeString(f, keep.isEmpty() ? "" : String.join("\n", keep) + "\n");
    }

    /** Clips the global gradient norm; returns the norm before clipping. */
    static double clip(Map<String, Tensor> params, double max) {
        List<Tensor> grads = new ArrayList<>();
        for (Tensor p : params.values()) if (p.grad().defined()) grads.add(p);
        TensorVector v = new TensorVector(grads.toArray(new Tensor[0]));
        return torch.clip_grad_norm_(v, max > 0 ? max : Double.POSITIVE_INFINITY, 2.0, false);
    }

    /** A well-mixed 64-bit value of two (SplitMix64's finaliser). */
    static long mix(long a, long b) {
        long z = a * 0x9E3779B97F4A7C15L + b;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }


    /** Encoded training data: captioned images (SFT) or winners and losers with their prompts. */
    static final class Data {
        final EncodedSet winners, losers;
        private final Map<Long, long[]> orders = new java.util.HashMap<>();

        Data(EncodedSet winners, EncodedSet losers) {
            this.winners = winners;
            this.losers = losers;
        }

        long size() {
            return winners.size();
        }

        static Data load(boolean preference, Path path, TextToImageModel m, EncodedSet.OnBadImage onBad) throws IOException {
            Path cache = cacheDir();
            if (!preference) {
                ImageCaptionSet set = ImageCaptionSet.load(path);
                List<Path> files = set.items().stream().map(ImageCaptionSet.Item::file).toList();
                List<String> caps = set.items().stream().map(ImageCaptionSet.Item::caption).toList();
                return new Data(EncodedSet.encode(files, caps, m.autoencoder, m.imageSize, m.latentScale, m.textEncoder, cache, onBad, null), null);
            }
            PreferencePairSet pairs = PreferencePairSet.load(path);
            List<String> prompts = pairs.pairs().stream().map(PreferencePairSet.Pair::prompt).toList();
            // a pair with an unreadable image cannot be used at all
            EncodedSet.OnBadImage strict = EncodedSet.OnBadImage.FAIL;
            EncodedSet w = EncodedSet.encode(pairs.pairs().stream().map(PreferencePairSet.Pair::winner).toList(), prompts,
                m.autoencoder, m.imageSize, m.latentScale, m.textEncoder, cache, strict, null);
            EncodedSet l = EncodedSet.encode(pairs.pairs().stream().map(PreferencePairSet.Pair::loser).toList(), prompts,
                m.autoencoder, m.imageSize, m.latentScale, m.textEncoder, cache, strict, null);
            return new Data(w, l);
        }

        /** The sample at position {@code pos} of the run: epochs are permutations seeded by (seed, epoch). */
        long order(long seed, long pos) {
            long n = size(), epoch = pos / n;
            long[] perm = orders.computeIfAbsent(epoch, e -> {
                List<Long> l = new ArrayList<>();
                for (long i = 0; i < n; i++) l.add(i);
                Collections.shuffle(l, new Random(mix(seed, e)));
                return l.stream().mapToLong(Long::longValue).toArray();
            });
            if (orders.size() > 4) orders.keySet().removeIf(e -> e < epoch - 1);
            return perm[(int) (pos % n)];
        }
    }
}
