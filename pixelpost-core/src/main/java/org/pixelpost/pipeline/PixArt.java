package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.Conditioning;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.text.T5TextEncoder;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * PixArt-alpha: a DiT with cross-attention to T5 v1.1 XXL features (120 tokens, masked), decoding
 * through SD's AutoencoderKL. Read from a diffusers {@code PixArtAlphaPipeline} folder
 * ({@code transformer/}, {@code text_encoder/} (sharded), {@code tokenizer/}, {@code vae/},
 * {@code scheduler/}) or from PixArt's original checkpoint ({@code PixArt-XL-2-512x512.pth},
 * {@code PixArt-XL-2-1024-MS.pth}, or the same as {@code .safetensors}), which holds the
 * transformer only and takes the other components from a PixArt folder.
 */
final class PixArt implements Family {
    static final String CLASS_NAME = "PixArtAlphaPipeline";

    @Override public List<String> classNames() { return List.of(CLASS_NAME); }
    @Override public String displayName() { return "PixArt-alpha"; }

    @Override
    public boolean composes(Denoiser d, Autoencoder a, TextEncoder t) {
        return d instanceof DiT && a instanceof AutoencoderKL && t instanceof T5TextEncoder;
    }

    /** PixArt's sampling scale (its inference scripts and diffusers' pipeline). */
    @Override public double defaultGuidance() { return 4.5; }

    @Override
    public String sizeProblem(int size, TextToImageModel m) {
        int unit = m.autoencoder.downsampling() * ((DiT) m.denoiser).config().patchSize();
        return size % unit == 0 ? null : size + " is not a multiple of " + unit + " (the autoencoder's downsampling times the patch size)";
    }

    /** PixArt's training schedule: 1000 linear betas 0.0001..0.02, sampled without clipping. */
    @Override
    public DdimScheduler.Config defaultScheduler() {
        return DdimScheduler.Config.defaults().withBetas(0.0001, 0.02, "linear").withClipSample(false).withSetAlphaToOne(false).withStepsOffset(0)
            .withTimestepSpacing("linspace");
    }

    /** diffusers' PixArt LoRA targets, in the original layout's names: attention projections and the feed-forward. */
    @Override
    public Map<String, List<String>> loraPresets() {
        return Map.of("attention", List.of(".attn.qkv", ".attn.proj", ".cross_attn.q_linear", ".cross_attn.kv_linear", ".cross_attn.proj"),
            "ff", List.of(".mlp.fc1", ".mlp.fc2"));
    }

    @Override
    public Map<String, String> loraMetadata(TextToImageModel m) {
        return Map.of("ss_base_model_version", ((DiT) m.denoiser).config().useAdditionalConditions() ? "pixart_alpha_1024" : "pixart_alpha_512");
    }

    /** The 1024-MS model's resolution and aspect ratio of the image being made. */
    @Override
    public Conditioning sizeConditions(TextToImageModel m, Conditioning text, int height, int width) {
        if (!((DiT) m.denoiser).config().useAdditionalConditions()) return text;
        long b = text.size();
        Tensor res = Tensors.fromFloats(new float[] {height, width}, 1, 2).expand(b, 2).contiguous();
        Tensor ar = org.bytedeco.pytorch.global.torch.full(new long[] {b, 1}, new org.bytedeco.pytorch.Scalar((double) height / width));
        return text.withExtra(DiT.RESOLUTION, res).withExtra(DiT.ASPECT_RATIO, ar);
    }

    /** PixArt's aspect-ratio bins at 1024 (height, width), as its multi-scale training used them; the 512 bins are these halved. */
    static final int[][] BINS_1024 = {
        {512, 2048}, {512, 1856}, {576, 1792}, {576, 1728}, {576, 1664}, {640, 1600}, {640, 1536}, {704, 1472}, {704, 1408}, {704, 1344},
        {768, 1344}, {768, 1280}, {832, 1216}, {832, 1152}, {896, 1152}, {896, 1088}, {960, 1088}, {960, 1024}, {1024, 1024}, {1024, 960},
        {1088, 960}, {1088, 896}, {1152, 896}, {1152, 832}, {1216, 832}, {1280, 768}, {1344, 768}, {1408, 704}, {1472, 704}, {1536, 640},
        {1600, 640}, {1728, 576}, {2048, 512}};
    /** The ratio key of each bin (diffusers' dictionary keys, rounded to two places). */
    static final double[] BIN_RATIOS = {0.25, 0.28, 0.32, 0.33, 0.35, 0.4, 0.42, 0.48, 0.5, 0.52, 0.57, 0.6, 0.68, 0.72, 0.78, 0.82, 0.88,
        0.94, 1.0, 1.07, 1.13, 1.21, 1.29, 1.38, 1.46, 1.67, 1.75, 2.0, 2.09, 2.4, 2.5, 3.0, 4.0};

    /** The bins of a model: at its image size 1024 or 512, none at other sizes. */
    static int[][] bins(int imageSize) {
        if (imageSize != 1024 && imageSize != 512) return null;
        int[][] out = new int[BINS_1024.length][];
        for (int i = 0; i < out.length; i++) out[i] = new int[] {BINS_1024[i][0] * imageSize / 1024, BINS_1024[i][1] * imageSize / 1024};
        return out;
    }

    /** The bin nearest in aspect ratio to {@code height / width} (the first of equals, as diffusers' {@code min} takes it). */
    static int[] nearestBin(int height, int width, int imageSize) {
        int[][] b = bins(imageSize);
        if (b == null) return new int[] {height, width};
        double ar = (double) height / width;
        int best = 0;
        for (int i = 1; i < b.length; i++) if (Math.abs(BIN_RATIOS[i] - ar) < Math.abs(BIN_RATIOS[best] - ar)) best = i;
        return b[best];
    }

    @Override
    public int[] samplingSize(TextToImageModel m, int height, int width) {
        return nearestBin(height, width, m.imageSize);
    }

    // ---- folders ----

    @Override
    public TextToImageModel loadFolder(Path dir, JsonNode index, LoadOptions o) throws IOException {
        for (String c : List.of("transformer", "vae", "text_encoder", "tokenizer"))
            if (!Files.isDirectory(dir.resolve(c)))
                throw new BadFileException(dir, "a PixArt-alpha folder needs " + c + "/ (model_index.json names it), but it is missing");
        Denoiser transformer = org.pixelpost.model.denoiser.Denoisers.load(dir.resolve("transformer"), null);
        try {
            if (!(transformer instanceof DiT)) throw new BadFileException(dir.resolve("transformer"), "not a PixArt transformer (" + transformer.className() + ")");
            return assemble((DiT) transformer, dir, o, readScheduler(dir.resolve("scheduler/scheduler_config.json")));
        } catch (IOException | RuntimeException e) {
            transformer.close();
            throw e;
        }
    }

    /** The transformer with the VAE, T5 and tokenizer of the PixArt folder {@code dir}. */
    private TextToImageModel assemble(DiT transformer, Path dir, LoadOptions o, DdimScheduler.Config sc) throws IOException {
        AutoencoderKL vae = AutoencoderKL.load(dir.resolve("vae"));
        T5TextEncoder te = null;
        try {
            ScalarType dtype = o.textEncoderDtype() == null ? ScalarType.Float : o.textEncoderDtype();
            te = T5TextEncoder.load(dir.resolve("text_encoder"), o.tokenizer() != null ? o.tokenizer() : dir.resolve("tokenizer"), dtype);
            if (te.dim() != transformer.config().captionChannels())
                throw new BadFileException(dir.resolve("text_encoder"), "gives " + te.dim() + "-wide features, but the transformer takes caption_channels "
                    + transformer.config().captionChannels());
            if (vae.latentChannels() != transformer.config().inChannels())
                throw new BadFileException(dir.resolve("vae"), "has " + vae.latentChannels() + " latent channels, but the transformer takes " + transformer.config().inChannels());
            if (o.predictionType() != null) sc = sc.withPredictionType(o.predictionType());
            int size = transformer.config().sampleSize() * vae.downsampling();
            // the VAE's scaling factor is applied by AutoencoderKL itself
            return new TextToImageModel(transformer, vae, "vae", te, sc, size, 1.0);
        } catch (IOException | RuntimeException e) {
            vae.close();
            if (te != null) te.close();
            throw e;
        }
    }

    /** The noise schedule of a PixArt scheduler config (diffusers ships DPM-Solver's), sampled with PixArt's DDIM settings. */
    private DdimScheduler.Config readScheduler(Path f) throws IOException {
        if (!Files.isRegularFile(f)) return defaultScheduler();
        JsonNode j = StableDiffusion.json(f);
        DdimScheduler.Config read = DdimScheduler.Config.read(f);
        if (j.path("_class_name").asText().equals("DDIMScheduler")) return read;
        DdimScheduler.Config d = defaultScheduler().withNumTrainTimesteps(read.numTrainTimesteps()).withBetas(read.betaStart(), read.betaEnd(), read.betaSchedule())
            .withPredictionType(read.predictionType());
        return j.has("timestep_spacing") ? d.withTimestepSpacing(read.timestepSpacing()) : d;
    }

    @Override
    public void saveFolder(TextToImageModel m, Path dir) throws IOException {
        DiT transformer = (DiT) m.denoiser;
        T5TextEncoder te = (T5TextEncoder) m.textEncoder;
        transformer.savePixArt(dir.resolve("transformer"));
        ((AutoencoderKL) m.autoencoder).save(dir.resolve("vae"));
        te.save(dir.resolve("text_encoder"));
        te.tokenizer().save(dir.resolve("tokenizer"));
        ObjectMapper om = new ObjectMapper();
        Files.createDirectories(dir.resolve("scheduler"));
        AtomicFiles.writeString(dir.resolve("scheduler/scheduler_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(m.scheduler.toJson()));
        ObjectNode idx = om.createObjectNode();
        idx.put("_class_name", CLASS_NAME).put("_diffusers_version", "0.30.3");
        idx.putArray("transformer").add("diffusers").add(DiT.PIXART_CLASS);
        idx.putArray("vae").add("diffusers").add("AutoencoderKL");
        idx.putArray("text_encoder").add("transformers").add(T5TextEncoder.CLASS_NAME);
        idx.putArray("tokenizer").add("transformers").add("T5Tokenizer");
        idx.putArray("scheduler").add("diffusers").add("DDIMScheduler");
        AtomicFiles.writeString(dir.resolve("model_index.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(idx));
    }

    // ---- PixArt's original checkpoints ----

    @Override public boolean hasSingleFile() { return true; }

    @Override
    public boolean readsSingleFile(java.util.Set<String> keys) {
        return DiT.isOriginalPixArt(keys);
    }

    /**
     * The transformer from the original file; T5, tokenizer, VAE and scheduler from
     * {@code options.configs()}, a PixArt-alpha folder, whose {@code transformer/config.json}, where
     * there is one, gives the transformer's configuration (otherwise it is read from the shapes).
     */
    @Override
    public TextToImageModel loadSingleFile(Path file, LoadOptions o) throws IOException {
        Path parts = o.configs();
        if (parts == null)
            throw new BadFileException(file, "an original PixArt-alpha checkpoint holds the transformer only: pass a PixArt-alpha folder for its "
                + "T5 encoder, tokenizer and VAE (--configs DIR with text_encoder/, tokenizer/, vae/)");
        for (String c : List.of("vae", "text_encoder", "tokenizer"))
            if (!Files.isDirectory(parts.resolve(c))) throw new BadFileException(parts, "has no " + c + "/, which an original PixArt checkpoint takes from it");
        DiT transformer;
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the model
            Map<String, Tensor> all = Checkpoints.read(file);
            DiT.Config c = originalConfig(file, all, parts);
            transformer = DiT.fromOriginal(c, all, file);
        }
        try {
            return assemble(transformer, parts, o, readScheduler(parts.resolve("scheduler/scheduler_config.json")));
        } catch (IOException | RuntimeException e) {
            transformer.close();
            throw e;
        }
    }

    /** The transformer configuration of an original file: from {@code parts/transformer/config.json} where present, else the shapes. */
    static DiT.Config originalConfig(Path file, Map<String, Tensor> all, Path parts) throws IOException {
        Path cfg = parts == null ? null : parts.resolve("transformer/config.json");
        if (cfg != null && Files.isRegularFile(cfg)) {
            try {
                return DiT.pixArtConfig(StableDiffusion.json(cfg));
            } catch (RuntimeException e) {
                throw new BadFileException(cfg, "unusable PixArt config (" + e.getMessage() + ")");
            }
        }
        return DiT.originalConfig(ShapeDetection.shapesOf(all), file, headsInHeader(file));
    }

    /** The head count PixelPost writes into an original file's header ({@code num_heads}), which the shapes do not fix; null where absent. */
    static Integer headsInHeader(Path file) throws IOException {
        if (!file.getFileName().toString().endsWith(".safetensors")) return null;
        try (SafeTensors st = SafeTensors.open(file)) {
            String h = st.metadata().get("num_heads");
            return h != null && h.matches("\\d{1,4}") ? Integer.parseInt(h) : null;
        }
    }

    /** The original layout: the transformer's parameters and positions (its head count in the header, which the shapes do not fix). */
    @Override
    public Map<String, Tensor> singleFileState(TextToImageModel m) {
        return ((DiT) m.denoiser).originalState();
    }

    @Override
    public Map<String, String> singleFileMetadata(TextToImageModel m) {
        return Map.of("format", "pt", "num_heads", Integer.toString(((DiT) m.denoiser).config().numHeads()));
    }
}
