package org.pixelpost.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.data.EncodedBatches;
import org.pixelpost.data.EncodedSet;
import org.pixelpost.data.ImageCaptionSet;
import org.pixelpost.data.PreferencePairSet;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.Images;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.io.run.RunLock;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.objective.Batch;
import org.pixelpost.nn.Lora;
import org.pixelpost.lora.LoraTargets;
import org.pixelpost.lora.LoraWeights;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.pipeline.StableDiffusion;
import org.pixelpost.tensor.Generator;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;

/**
 * A training run in a folder, as {@code pixelpost train} runs it: the {@link TrainConfig} turned
 * into a model, batches, an objective and options for the {@link Trainer}, and the run folder
 * around it ({@code config.json}, {@code metrics.jsonl}, TensorBoard events, sample grids,
 * {@code checkpoints/}, and the final {@code model/}).
 */
public final class TrainRun {
    /** What a run tells its caller while it goes. */
    public interface Listener {
        void step(long step, long total, Map<String, Double> terms);

        void message(String text);

        /** Training begins (data encoded, model loaded): {@code trainer} takes stop requests from here on. */
        default void started(Trainer trainer) {}
    }

    /** The outcome: where the final model is, the last step, and the wall time. */
    public record Summary(Path model, long steps, double seconds, Map<String, Double> lastTerms) {}

    /** A LoRA run's result, in the run folder. */
    public static final String LORA_FILE = "lora.safetensors";

    private final TrainConfig c;
    private final Listener listener;
    private final Path out;
    private final GradSync group;

    public TrainRun(TrainConfig config, Listener listener) {
        this(config, listener, GradSync.LOCAL);
    }

    /**
     * A run as one process of a data-parallel {@code group}: every process trains on its share of
     * each step's batch, and rank 0 alone writes the run folder (config, metrics, TensorBoard,
     * validation, samples, checkpoints, the final model). Every process reads the same checkpoint
     * to resume.
     */
    public TrainRun(TrainConfig config, Listener listener, GradSync group) {
        this.c = config;
        this.listener = listener;
        this.out = Paths.get(config.run().out());
        this.group = group;
    }

    /** The default folder for encoded data: {@code $PIXELPOST_CACHE} or the user cache. */
    public static Path cacheDir() {
        String env = System.getenv("PIXELPOST_CACHE");
        if (env != null && !env.isBlank()) return Paths.get(env);
        return org.pixelpost.io.tensorfile.Checkpoints.userCache("encoded");
    }

    public Summary run() throws IOException {
        Folder folder = new Folder(out);
        try {
            return run(folder);
        } catch (IOException | RuntimeException e) {
            folder.abandon();
            throw e;
        }
    }

    /**
     * The run folder as this run holds it: whether the run made it, holds its lock, and has begun
     * training. A run that fails before its first step leaves nothing behind in a folder it made
     * itself (and only while it held the folder: a run refused by the lock touches nothing).
     */
    private static final class Folder {
        final Path dir;
        boolean created, locked, training;

        Folder(Path dir) {
            this.dir = dir;
        }

        /** Makes or reuses the folder (rank 0); refuses one that holds other files. */
        void prepare(boolean resuming) throws IOException {
            created = OutputDir.prepare(dir, "--out", OutputDir.Existing.MAY_HOLD_FILES, false);
            if (!resuming && !OutputDir.isEmpty(dir) && !Files.isRegularFile(dir.resolve("config.json")) && !onlyLock(dir))
                throw new InvalidValueException("--out", dir + " holds files but is not a run folder; choose an empty or new folder");
        }

        RunLock lock() throws IOException {
            RunLock l = RunLock.acquire(dir);
            locked = true;
            return l;
        }

        void abandon() throws IOException {
            if (created && locked && !training) AtomicFiles.deleteTree(dir);
        }
    }

    /** What a run trains and what it leaves: the whole denoiser and a model folder, or LoRA adapters and their file. */
    private interface Method {
        /** The model as this method trains it (adapters attached); closed on failure. */
        TextToImageModel prepare(TextToImageModel m);

        /** Writes the run's result into the run folder and returns its path. */
        Path save(TextToImageModel m, Path out) throws IOException;
    }

    private Method method() {
        if (!c.lora()) return new Method() {
            @Override public TextToImageModel prepare(TextToImageModel m) { return m; }

            @Override
            public Path save(TextToImageModel m, Path out) throws IOException {
                m.save(out.resolve("model"));
                return out.resolve("model");
            }
        };
        return new Method() {
            @Override public TextToImageModel prepare(TextToImageModel m) { return withAdapters(m); }

            @Override
            public Path save(TextToImageModel m, Path out) throws IOException {
                LoraWeights w = LoraWeights.of(LoraWeights.components(m)).withMetadata(m.family().loraMetadata(m));
                String format = c.adapters().loraFormat().equalsIgnoreCase("auto") ? m.family().loraFormat() : c.adapters().loraFormat();
                w.write(out.resolve(LORA_FILE), org.pixelpost.lora.LoraLayout.written(format));
                return out.resolve(LORA_FILE);
            }
        };
    }

    /** The wiring: the folder, the model as the method trains it, the data, the trainer; then the result. */
    private Summary run(Folder folder) throws IOException {
        long started = System.nanoTime();
        Engine.start();
        Checkpointer checkpoints = new Checkpointer(out.resolve("checkpoints"), c.run().checkpointEvery(), c.run().keepCheckpoints());
        Path resumeFrom = c.run().resume() == null || c.run().resume().isBlank() ? null : checkpoints.resolve(c.run().resume());
        if (resumeFrom == null && !checkpoints.list().isEmpty())
            throw new IOException(out + ": holds checkpoints of an earlier run; pass --resume latest to continue it, or choose another --out");
        org.bytedeco.pytorch.Device device = device();
        boolean writer = group.rank() == 0; // the others only train
        if (writer) folder.prepare(resumeFrom != null);
        Method method = method();
        try (RunLock lock = writer ? folder.lock() : null; TextToImageModel m = method.prepare(TextToImageModel.load(Paths.get(c.run().init()),
                 org.pixelpost.pipeline.LoadOptions.defaults().withTextEncoderDtype(org.pixelpost.model.text.T5TextEncoder.dtype(c.data().textEncoderDtype()))));
             Denoiser reference = c.needsReference() ? reference(m) : null) {
            if (resumeFrom != null && writer) checkSameRun();
            checkStepFits(c, m, group.worldSize());
            if (!device.is_cpu()) {
                m.to(device);
                if (reference != null) reference.module().to(device);
            }
            if (writer) listener.message("encoding data (cached after the first run)");
            if (!writer) group.awaitRank0("encoding"); // rank 0 encodes into the cache first (however long); the others then read it
            try (Data data = Data.load(c, Paths.get(c.data().data()), m, listener);
                 Data val = c.data().valData() != null && writer ? Data.load(c, Paths.get(c.data().valData()), m, listener) : null) {
                if (writer) group.rank0Done("encoding");
                // the data's text is encoded: a large text encoder (T5) leaves memory, keeping the validation prompts' encodings
                long teParams = m.textEncoder.module() != null ? m.textEncoder.module().parameterCount() : 0;
                long teBytes = m.textEncoder.module() != null
                    ? m.textEncoder.module().parameters().values().stream().mapToLong(p -> p.numel() * p.element_size()).sum() : 0;
                if (m.textEncoder.unload(c.validation().samplePrompts()) && writer)
                    listener.message(String.format("text encoder unloaded for training (%,d parameters, %.3f GB of weights freed)", teParams, teBytes / 1e9));
                long perStep = (long) c.data().batchSize() * group.slots(c.run().gradAccum());
                long total = c.run().epochs() > 0 ? c.run().epochs() * ((data.size() + perStep - 1) / perStep) : c.run().steps();
                EncodedBatches batches = data.batches(c, c.run().seed(), group.slots(c.run().gradAccum()));
                List<Batch> valBatches = val == null ? null : val.batches(c, 0, c.run().gradAccum()).inOrder();
                try (Trainer t = new Trainer(m, batches, c.buildObjective(reference), c.trainerOptions(total));
                     Autoencoder pixelDecoder = c.method().pixelDecoder().equals("vae") ? null : Autoencoders.load(c.method().pixelDecoder())) {
                    if (c.run().gradientCheckpointing()) // the denoiser's blocks and the pixel term's decoder stages are recomputed in the backward
                        for (org.pixelpost.nn.Module part : List.of(m.denoiser.module(), (pixelDecoder != null ? pixelDecoder : m.autoencoder).decoder()))
                            part.gradientCheckpointing(true);
                    t.checkpointer(checkpoints).gradSync(group).concurrentMicroBatches(c.run().concurrentMicroBatches());
                    if (pixelDecoder != null) t.pixelDecoder(pixelDecoder);
                    if (resumeFrom != null) t.resume(resumeFrom);
                    if (!writer) {
                        listener.started(t);
                        Map<String, Double> last = t.run(); // rank 0 logs the terms, averaged over the processes
                        return new Summary(null, t.step(), (System.nanoTime() - started) / 1e9, last);
                    }
                    startLogs(t, resumeFrom);
                    Map<String, Double> last;
                    try (FolderLog log = new FolderLog(valBatches, started)) {
                        t.listener(log);
                        folder.training = true;
                        listener.started(t);
                        last = t.run();
                    }
                    t.applyEma(); // the result: EMA weights where there are, otherwise the trained ones
                    return new Summary(method.save(m, out), t.step(), (System.nanoTime() - started) / 1e9, last);
                }
            }
        }
    }

    /** The device of this process: in a group, "cuda" means the GPU of the process's local rank. */
    private org.bytedeco.pytorch.Device device() {
        if (group.worldSize() > 1 && c.run().device().startsWith("cuda:"))
            throw new InvalidValueException("--device", c.run().device() + ": in a group of processes each takes the GPU of its LOCAL_RANK; say cuda");
        try {
            return Engine.device(c.run().device().equals("cuda") && group.worldSize() > 1 ? "cuda:" + group.localRank() : c.run().device());
        } catch (IllegalArgumentException e) {
            throw new InvalidValueException("--device", e.getMessage());
        }
    }

    /** The run folder's logs continue a resumed run where its checkpoint is, or start afresh; then the resolved config. */
    private void startLogs(Trainer t, Path resumeFrom) throws IOException {
        if (resumeFrom != null) {
            // what the interrupted run logged past its checkpoint goes: metrics and curves do not overlap
            org.pixelpost.io.JsonLines.keepUpToStep(out.resolve("metrics.jsonl"), t.step());
            TensorBoard.dropAfter(out.resolve("tensorboard"), t.step());
            listener.message("resumed from " + resumeFrom + " at step " + t.step());
        } else {
            Files.deleteIfExists(out.resolve("metrics.jsonl"));
            AtomicFiles.deleteTree(out.resolve("tensorboard")); // a run that died before its first checkpoint
        }
        AtomicFiles.writeString(out.resolve("config.json"), c.toJson());
    }

    private static boolean onlyLock(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.allMatch(p -> p.getFileName().toString().equals(RunLock.FILE));
        }
    }

    /**
     * DPO's reference: in a LoRA run without {@code --reference}, the same model with its adapters
     * off (no second copy of the base).
     */
    private Denoiser reference(TextToImageModel m) throws IOException {
        if (c.lora() && c.method().reference() == null) return Denoisers.withoutAdapters(m.denoiser);
        Path dir = Paths.get(c.method().reference() != null ? c.method().reference() : c.run().init());
        // PixelPost's folders keep the denoiser in denoiser/, diffusers' in unet/ or transformer/
        Path sub = java.util.stream.Stream.of("denoiser", "unet", "transformer").map(dir::resolve).filter(Files::isDirectory).findFirst()
            .orElseThrow(() -> new BadFileException(dir, "no denoiser/, unet/ or transformer/ folder: not a model folder to use as the DPO reference"));
        Denoiser r = Denoisers.load(sub, null);
        r.module().freeze();
        return r;
    }

    /**
     * A resumed run must be the run its checkpoints belong to: the same starting model and, in a
     * LoRA run (whose checkpoints hold only the adapters), the same adapters. Checked against the
     * run folder's {@code config.json}.
     */
    private void checkSameRun() throws IOException {
        Path f = out.resolve("config.json");
        if (!Files.isRegularFile(f)) return;
        com.fasterxml.jackson.databind.JsonNode was;
        try {
            was = TrainConfig.JSON.readTree(f.toFile());
        } catch (IOException e) {
            throw new BadFileException(f, "malformed JSON (" + e.getMessage() + ")");
        }
        com.fasterxml.jackson.databind.JsonNode now = c.json();
        for (String k : List.of("init", "lora_rank", "lora_alpha", "lora_targets", "lora_dropout"))
            if (was.has(k) && !was.get(k).equals(now.get(k)))
                throw new InvalidValueException(k, now.get(k) + " differs from " + was.get(k) + " in " + f
                    + ", which the checkpoints belong to; resume with the run's own config (--config " + f + ")");
    }

    /**
     * {@code m} with a LoRA run's adapters, initialised from the run's seed (a resumed run starts from
     * the same, then loads its checkpoint); put on before the data is encoded, so a bad
     * {@code --lora-targets} is refused at once. The model is closed if that fails.
     */
    private TextToImageModel withAdapters(TextToImageModel m) {
        if (!c.lora()) return m;
        long before = m.denoiser.module().parameterCount();
        try (Generator g = Generator.seeded(Generator.mix(c.run().seed(), 0x10AAL))) {
            List<String> layers;
            try {
                layers = Lora.attach(m.denoiser.module(), LoraTargets.of(c.adapters().loraTargets(), m.family()), c.adapters().loraRank(), c.effectiveLoraAlpha(), c.adapters().loraDropout(), g);
            } catch (Lora.NoTargetException e) {
                throw new InvalidValueException("lora_targets", c.adapters().loraTargets() + " select no linear layer or convolution of " + m.denoiser.className());
            }
            long adapters = m.denoiser.module().trainableParameters().values().stream().mapToLong(Tensor::numel).sum();
            listener.message(String.format("LoRA rank %d, alpha %s on %d layers: %,d trainable parameters (%.2f%% of the denoiser's %,d)",
                c.adapters().loraRank(), c.effectiveLoraAlpha(), layers.size(), adapters, 100.0 * adapters / before, before));
            return m;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /** The run folder's logs: metrics averaged over each logging window, TensorBoard, validation and sample grids. */
    private final class FolderLog implements Trainer.Listener, AutoCloseable {
        private final List<Batch> val;
        private final long started;
        private final TensorBoard tb;
        private final Map<String, Double> window = new LinkedHashMap<>();
        private int windowSteps;

        FolderLog(List<Batch> val, long started) throws IOException {
            this.val = val;
            this.started = started;
            this.tb = new TensorBoard(out.resolve("tensorboard"));
        }

        @Override
        public void step(Trainer t, long step, Map<String, Double> terms) throws IOException {
            long total = t.options().steps();
            terms.forEach((k, v) -> window.merge(k, v, Double::sum));
            windowSteps++;
            if (step % c.run().logEvery() == 0 || step == total) {
                Map<String, Double> mean = new LinkedHashMap<>();
                int n = windowSteps;
                window.forEach((k, v) -> mean.put(k, v / n));
                if (val != null && c.validation().valEvery() > 0 && (step % c.validation().valEvery() == 0 || step == total))
                    t.evaluate(val, 0x7A11DL).forEach((k, v) -> mean.put("val_" + k, v));
                writeMetrics(step, mean, started);
                tb.scalars(step, mean);
                window.clear();
                windowSteps = 0;
            }
            listener.step(step, total, terms);
            if (c.validation().sampleEvery() > 0 && (step % c.validation().sampleEvery() == 0 || step == total) && !c.validation().samplePrompts().isEmpty())
                sample(t.model(), step);
        }

        @Override
        public void message(String text) {
            listener.message(text);
        }

        @Override
        public void close() throws IOException {
            tb.close();
        }
    }

    private void sample(TextToImageModel m, long step) throws IOException {
        long[] seeds = new long[c.validation().samplePrompts().size()];
        Tensor images = m.sampler().sample(c.validation().samplePrompts(), seeds, new Sampler.Settings(c.validation().sampleSteps(), c.validation().sampleGuidance(), 0)
            .withSampler(org.pixelpost.sampling.Samplers.Spec.parse(c.validation().sampleSampler(), List.of())), null);
        List<BufferedImage> tiles = new ArrayList<>();
        for (int i = 0; i < seeds.length; i++) tiles.add(Images.toImage(images.select(0, i)));
        Images.writePng(out.resolve("samples").resolve(String.format("step-%06d.png", step)), Images.grid(tiles, Math.min(8, tiles.size()), 2));
    }

    private void writeMetrics(long step, Map<String, Double> terms, long started) throws IOException {
        ObjectNode j = new ObjectMapper().createObjectNode();
        j.put("step", step);
        j.put("time", Math.round((System.nanoTime() - started) / 1e7) / 100.0);
        terms.forEach(j::put);
        j.put("rss_mib", Math.round(org.bytedeco.javacpp.Pointer.physicalBytes() / 1048576.0 * 10) / 10.0);
        Files.writeString(out.resolve("metrics.jsonl"), j + "\n", StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /**
     * A step draws its noise for all of its micro-batches at once (the draws do not depend on how the
     * step is split): refused before any data is encoded where the step's rows would not fit in memory.
     */
    static void checkStepFits(TrainConfig c, TextToImageModel m, int processes) {
        double rows = (double) c.data().batchSize() * c.run().gradAccum() * processes * (c.preference() ? 2 : 1);
        double latent = (double) m.autoencoder.latentChannels() * m.latentSize() * m.latentSize();
        double bytes = rows * latent * 4 * 3; // the noise, the noised latent and a draw of its size, float32
        long physical = Engine.physicalMemory();
        if (rows > Integer.MAX_VALUE || bytes > physical / 2.0)
            throw new InvalidValueException("grad_accum", String.format("batch %d x --grad-accum %d x %d processes = %.0f samples per step; "
                + "their noise alone needs about %.1f GB, more than half of this machine's %.1f GB", c.data().batchSize(), c.run().gradAccum(), processes, rows,
                bytes / 1e9, physical / 1e9));
    }

    /** Encoded training data: captioned images (SFT) or winners and losers with their prompts. */
    private record Data(EncodedSet winners, EncodedSet losers) implements AutoCloseable {
        long size() {
            return winners.size();
        }

        EncodedBatches batches(TrainConfig c, long seed, int slotsPerStep) {
            return new EncodedBatches(winners, losers, c.data().batchSize(), slotsPerStep, seed, c.data().flip(), c.data().captionDropout(),
                c.data().latentSample().equals("sample"));
        }

        static Data load(TrainConfig c, Path path, TextToImageModel m, Listener listener) throws IOException {
            Path cache = cacheDir();
            boolean failOnBad = c.data().onBadImage().equals("fail");
            if (!c.preference()) {
                ImageCaptionSet set = ImageCaptionSet.load(path);
                List<Path> files = set.items().stream().map(ImageCaptionSet.Item::file).toList();
                List<String> caps = set.items().stream().map(ImageCaptionSet.Item::caption).toList();
                return new Data(EncodedSet.encode(files, caps, m, cache, failOnBad ? EncodedSet.OnBadImage.FAIL : EncodedSet.OnBadImage.SKIP, null), null);
            }
            PreferencePairSet loaded = PreferencePairSet.load(path);
            List<PreferencePairSet.Pair> all = loaded.pairs(), usable = new ArrayList<>();
            List<String> degenerate = new ArrayList<>();
            for (PreferencePairSet.Pair p : all) {
                if (sameImage(p.winner(), p.loser())) degenerate.add(p.winner().getFileName() + " = " + p.loser().getFileName());
                else usable.add(p);
            }
            if (!degenerate.isEmpty()) {
                String what = degenerate.size() + " of " + all.size() + " pairs in " + path + " have the same image as winner and loser "
                    + "(they carry no preference): " + (degenerate.size() > 3 ? degenerate.subList(0, 3) + "..." : degenerate);
                if (c.data().onBadPair().equals("fail")) throw new BadFileException(path, what);
                listener.message("warning: " + what + "; dropped (--on-bad-pair fail refuses them)");
                if (usable.isEmpty()) throw new BadFileException(path, "no usable pairs left");
            }
            PreferencePairSet pairs = new PreferencePairSet(loaded.file(), usable);
            List<String> prompts = pairs.pairs().stream().map(PreferencePairSet.Pair::prompt).toList();
            // a pair with an unreadable image cannot be used at all
            EncodedSet.OnBadImage strict = EncodedSet.OnBadImage.FAIL;
            EncodedSet w = EncodedSet.encode(pairs.pairs().stream().map(PreferencePairSet.Pair::winner).toList(), prompts, m, cache, strict, null);
            EncodedSet l = EncodedSet.encode(pairs.pairs().stream().map(PreferencePairSet.Pair::loser).toList(), prompts, m, cache, strict, null);
            return new Data(w, l);
        }

        /** The same file, or two files with the same bytes. */
        static boolean sameImage(Path a, Path b) throws IOException {
            if (a.toAbsolutePath().normalize().equals(b.toAbsolutePath().normalize())) return true;
            return Files.isRegularFile(a) && Files.isRegularFile(b) && Files.mismatch(a, b) == -1;
        }

        @Override
        public void close() {
            winners.close();
            if (losers != null) losers.close();
        }
    }
}
