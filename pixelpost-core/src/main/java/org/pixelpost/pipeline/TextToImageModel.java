package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.text.MiniLmTextEncoder;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.PredictionType;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.tensor.Tensors;

/**
 * A text-to-image latent diffusion model: a {@link Denoiser}, an {@link Autoencoder}, a
 * {@link TextEncoder} and a scheduler configuration, composed. It is the one place that converts
 * between images and the model's latent space ({@link #encodeImages}, {@link #decodeLatents}) and
 * the one place that says how the denoiser's output is read ({@link #predictionType}, from the
 * scheduler). On disk it is a folder laid out like a diffusers pipeline: {@code model_index.json}
 * naming each component's class, {@code denoiser/}, {@code scheduler/scheduler_config.json}.
 */
public final class TextToImageModel implements AutoCloseable {
    public final Denoiser denoiser;
    public final Autoencoder autoencoder;
    public final TextEncoder textEncoder;
    public final DdimScheduler.Config scheduler;
    /** How the autoencoder is found again: a name ({@code taef2}) or a path. */
    public final String autoencoderSpec;
    public final int imageSize;
    /** Diffusion runs on {@code latentScale * autoencoder latent}, so latents are near unit variance. */
    public final double latentScale;
    private final Family family;

    public TextToImageModel(Denoiser denoiser, Autoencoder autoencoder, String autoencoderSpec, TextEncoder textEncoder,
                            DdimScheduler.Config scheduler, int imageSize, double latentScale) {
        if (imageSize % autoencoder.downsampling() != 0)
            throw new IllegalArgumentException("image size " + imageSize + " is not a multiple of the autoencoder's " + autoencoder.downsampling());
        if (!(latentScale > 0) || Double.isInfinite(latentScale)) throw new IllegalArgumentException("latent scale " + latentScale + " must be a positive number");
        this.denoiser = denoiser;
        this.autoencoder = autoencoder;
        this.autoencoderSpec = autoencoderSpec;
        this.textEncoder = textEncoder;
        this.scheduler = scheduler;
        this.imageSize = imageSize;
        this.latentScale = latentScale;
        this.family = Families.of(denoiser, autoencoder, textEncoder);
    }

    /** The model's family: how it is written, its defaults, what its LoRA files say. */
    public Family family() {
        return family;
    }

    /** The scheduler of SD-class models: scaled_linear 0.00085..0.012, steps offset 1, no clipping. */
    public static DdimScheduler.Config defaultScheduler() {
        return DdimScheduler.Config.defaults().withBetas(0.00085, 0.012, "scaled_linear").withClipSample(false)
            .withSetAlphaToOne(false).withStepsOffset(1);
    }

    /** A new, randomly initialised model of a named DiT size over an autoencoder, with the embedded text encoder. */
    public static TextToImageModel create(String size, String autoencoderSpec, int imageSize, double latentScale) throws IOException {
        Autoencoder ae = Autoencoders.load(autoencoderSpec);
        TextEncoder te = new MiniLmTextEncoder();
        DiT.Config c = DiT.Config.named(size).withLatent(ae.latentChannels(), imageSize / ae.downsampling()).withCaptionChannels(te.dim());
        return new TextToImageModel(new DiT(c), ae, autoencoderSpec, te, defaultScheduler(), imageSize, latentScale);
    }

    /** How the denoiser's output is read: the scheduler's {@code prediction_type}. */
    public PredictionType predictionType() {
        return scheduler.predictionType();
    }

    /** The forward process the model was trained with. */
    public NoiseSchedule noiseSchedule() {
        return scheduler.schedule();
    }

    /** Latent size (height and width) at the model's image size. */
    public int latentSize() {
        return imageSize / autoencoder.downsampling();
    }

    /** Images {@code [B, 3, H, W]} in [0, 1] to model latents {@code [B, C, h, w]}. */
    public Tensor encodeImages(Tensor images) {
        return encodePosterior(images).mean();
    }

    /** The posterior of {@link #encodeImages} (model latents; {@code logvar} null for a deterministic autoencoder). */
    public org.pixelpost.model.autoencoder.Autoencoder.Posterior encodePosterior(Tensor images) {
        ScalarType w = dtypeOf(autoencoder.encoder());
        var p = autoencoder.posterior(images.to(w));
        Tensor mean = p.mean().to(images.scalar_type()).mul(Tensors.s(latentScale));
        return new org.pixelpost.model.autoencoder.Autoencoder.Posterior(mean,
            p.logvar() == null ? null : p.logvar().to(images.scalar_type()).add(Tensors.s(2 * Math.log(latentScale))));
    }

    /** The dtype of a module's weights (float32 unless the model was loaded to stay in bf16). */
    static ScalarType dtypeOf(org.pixelpost.nn.Module m) {
        for (org.bytedeco.pytorch.Tensor p : m.parameters().values()) return p.scalar_type().intern();
        return ScalarType.Float;
    }

    /** The denoiser's output for fp32 latents and text, whatever dtype its weights are in; fp32 out. */
    public Tensor denoise(Tensor zT, Tensor t, org.pixelpost.model.Conditioning cond) {
        ScalarType w = dtypeOf(denoiser.module());
        if (w == ScalarType.Float) return denoiser.forward(zT, t, cond);
        return denoiser.forward(zT.to(w), t, cond.mapFeatures(x -> x.to(w))).to(ScalarType.Float);
    }

    /** Model latents to images in [0, 1], not clamped (gradients flow through, for the pixel term). */
    public Tensor decodeLatents(Tensor latents) {
        return decodeLatentsWith(autoencoder, latents);
    }

    /**
     * Converts the weights of the denoiser, autoencoder and (where it has them in libtorch) text
     * encoder to bf16, halving their memory, for sampling; training keeps fp32 weights (use bf16
     * autocast there).
     */
    public TextToImageModel toBf16Weights() {
        denoiser.module().to(ScalarType.BFloat16);
        autoencoder.encoder().to(ScalarType.BFloat16);
        autoencoder.decoder().to(ScalarType.BFloat16);
        if (textEncoder.module() != null) textEncoder.module().to(ScalarType.BFloat16);
        return this;
    }

    /** Model latents to images in [0, 1] through another autoencoder over the same latent space (e.g. TAESD for SD). */
    public Tensor decodeLatentsWith(Autoencoder decoder, Tensor latents) {
        ScalarType w = dtypeOf(decoder.decoder());
        Tensor img = decoder.decode(latents.div(Tensors.s(latentScale)).to(w));
        return w == ScalarType.Float ? img : img.to(ScalarType.Float);
    }

    /**
     * A digest of the weights that encoding depends on (a CLIP text encoder's and a module
     * autoencoder's), so that cached encodings of one model are not reused for another of the same
     * architecture (another fine-tune, or a text-encoder LoRA merged in).
     */
    public String encoderFingerprint() {
        String te = textEncoder.fingerprint();
        String ae = autoencoder instanceof org.pixelpost.nn.Module a ? a.fingerprint() : "-";
        return te + "|" + ae;
    }

    /** Names the latent space (autoencoder, image size, scale), for caches of encoded images. */
    public String latentSpaceKey() {
        return autoencoder.name() + "|" + imageSize + "|" + latentScale;
    }

    /** Guided DDIM sampling with this model. */
    public Sampler sampler() {
        return new Sampler(this);
    }

    public static TextToImageModel load(Path dir) throws IOException {
        return load(dir, LoadOptions.defaults());
    }

    /**
     * A model folder of any family (PixelPost's, a diffusers Stable Diffusion folder), found by the
     * {@code _class_name} of its {@code model_index.json}, or a family's single file.
     */
    public static TextToImageModel load(Path dir, LoadOptions options) throws IOException {
        if (Files.isRegularFile(dir)) return Families.singleFile(dir).loadSingleFile(dir, options);
        Path index = dir.resolve("model_index.json");
        if (!Files.isDirectory(dir)) throw new BadFileException(dir, "not a model folder (no such folder or file)");
        if (!Files.isRegularFile(index)) throw new BadFileException(dir, "not a model folder (no model_index.json)");
        JsonNode j;
        try {
            j = new ObjectMapper().readTree(index.toFile());
        } catch (IOException e) {
            throw new BadFileException(index, "malformed JSON (" + e.getMessage() + ")");
        }
        String cls = j.path("_class_name").asText("");
        Family f = Families.byClassName(cls);
        // a folder another pipeline class wrote (an img2img export, say) is read by its components
        if (f == null && j.has("unet")) f = Families.byClassName("StableDiffusionPipeline");
        if (f == null && j.has("transformer") && j.has("text_encoder")) f = Families.byClassName(PixArt.CLASS_NAME);
        if (f == null && j.has("denoiser")) f = Families.byClassName(PixelPostFamily.CLASS_NAME);
        if (f == null) throw new BadFileException(index, "model class '" + cls + "' is not built here; known: " + Families.known());
        return f.loadFolder(dir, j, options);
    }

    /** Writes the whole folder, in the family's layout, under a temporary name and renames it into place. */
    public void save(Path dir) throws IOException {
        Path abs = dir.toAbsolutePath();
        Files.createDirectories(abs.getParent());
        Path tmp = abs.resolveSibling("." + abs.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        AtomicFiles.deleteTree(tmp);
        family.saveFolder(this, tmp);
        replace(abs, tmp);
    }

    /** Writes the family's single-file layout (atomically); for families that have one. */
    public void saveSingleFile(Path file) throws IOException {
        try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) { // what the layout made for the file is freed once written
            org.pixelpost.io.tensorfile.SafeTensors.write(file, family.singleFileState(this), family.singleFileMetadata(this));
        }
    }

    /** Puts the finished folder {@code tmp} where {@code abs} is. */
    private static void replace(Path abs, Path tmp) throws IOException {
        Path old = abs.resolveSibling("." + abs.getFileName() + ".old-" + ProcessHandle.current().pid());
        if (Files.exists(abs)) Files.move(abs, old);
        Files.move(tmp, abs);
        AtomicFiles.deleteTree(old);
    }

    /**
     * Moves the denoiser, the autoencoder and a text encoder that is a libtorch module to
     * {@code device}; what the model creates then follows (noise is drawn on the CPU and moved, so a
     * seed gives the same noise on every device).
     */
    public TextToImageModel to(org.bytedeco.pytorch.Device device) {
        denoiser.module().to(device);
        autoencoder.encoder().to(device);
        autoencoder.decoder().to(device);
        if (textEncoder.module() != null) textEncoder.module().to(device);
        return this;
    }

    /** {@code t} on the denoiser's device. */
    public Tensor onDevice(Tensor t) {
        return Tensors.follow(t, firstWeight());
    }

    /** Where the denoiser's weights are, so where the model runs. */
    public org.bytedeco.pytorch.Device device() {
        return firstWeight().device();
    }

    private Tensor firstWeight() {
        return denoiser.module().parameters().values().iterator().next();
    }

    @Override
    public void close() {
        textEncoder.close();
        denoiser.close();
        autoencoder.close();
    }
}
