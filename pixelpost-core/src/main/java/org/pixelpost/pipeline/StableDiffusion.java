package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.model.text.ClipTokenizer;
import org.pixelpost.nn.Module;
import org.pixelpost.schedule.DdimScheduler;
import org.pixelpost.schedule.PredictionType;
import org.pixelpost.tensor.Scope;

/**
 * Stable Diffusion 1.x / 2.x checkpoints as {@link TextToImageModel}s: a diffusers folder
 * ({@code model_index.json}, {@code unet/}, {@code vae/}, {@code text_encoder/}, {@code tokenizer/},
 * {@code scheduler/}) or an original single file ({@code .safetensors} / {@code .ckpt}:
 * {@code model.diffusion_model.*}, {@code first_stage_model.*},
 * {@code cond_stage_model.transformer.text_model.*}); both load as the same model, and each is
 * written from the other.
 */
public final class StableDiffusion {
    private StableDiffusion() {}

    /** The Stable Diffusion family: U-Net, AutoencoderKL and CLIP, in diffusers' folder layout or the original single file. */
    static final class SdFamily implements Family {
        @Override public java.util.List<String> classNames() { return List.of("StableDiffusionPipeline"); }
        @Override public String displayName() { return "Stable Diffusion"; }

        @Override
        public boolean composes(org.pixelpost.model.denoiser.Denoiser d, org.pixelpost.model.autoencoder.Autoencoder a, org.pixelpost.model.text.TextEncoder t) {
            return d instanceof UNet2DCondition && a instanceof AutoencoderKL && t instanceof ClipTextEncoder;
        }

        @Override public TextToImageModel loadFolder(Path dir, JsonNode index, LoadOptions o) throws IOException { return StableDiffusion.loadFolder(dir, index, o); }
        @Override public void saveFolder(TextToImageModel m, Path dir) throws IOException { StableDiffusion.saveFolder(m, dir); }
        @Override public boolean hasSingleFile() { return true; }

        /** SD's LDM layout, and the SDXL and SD 2.x layouts it refuses by name. */
        @Override
        public boolean readsSingleFile(java.util.Set<String> keys) {
            return keys.stream().anyMatch(k -> k.startsWith("model.diffusion_model.") || k.startsWith("conditioner.embedders.") || k.startsWith("cond_stage_model."));
        }
        @Override public TextToImageModel loadSingleFile(Path file, LoadOptions o) throws IOException { return StableDiffusion.loadSingleFile(file, o); }
        @Override public Map<String, Tensor> singleFileState(TextToImageModel m) { return StableDiffusion.singleFileState(m); }
        @Override public double defaultGuidance() { return 7.5; }

        @Override
        public String sizeProblem(int size, TextToImageModel m) {
            return size % 64 == 0 ? null : size + " is not a multiple of 64";
        }

        @Override public DdimScheduler.Config defaultScheduler() { return scheduler(null); }

        /** kohya's and diffusers' targets: the U-Net's and CLIP's attention projections, feed-forwards, transformer projections and convolutions. */
        @Override
        public Map<String, List<String>> loraPresets() {
            return Map.of(
                "attention", List.of(".to_q", ".to_k", ".to_v", ".to_out.0", ".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.out_proj"),
                "ff", List.of(".ff.net.0.proj", ".ff.net.2"),
                // the projections into and out of each transformer (1x1 convolutions in SD 1.x)
                "proj", List.of(".proj_in", ".proj_out"),
                // the residual-block, down- and upsampling convolutions (kohya's conv_dim targets)
                "conv", List.of(".conv1", ".conv2", ".conv_shortcut", ".downsamplers.0.conv", ".upsamplers.0.conv"));
        }

        @Override public String loraFormat() { return "kohya"; }

        @Override
        public Map<String, String> loraMetadata(TextToImageModel m) {
            return Map.of("ss_base_model_version", ((UNet2DCondition) m.denoiser).config().crossAttentionDim() == 1024 ? "sd_v2" : "sd_v1");
        }
    }

    /** The DDIM settings of SD 1.x: scaled_linear 0.00085..0.012, steps offset 1, no clipping. */
    public static DdimScheduler.Config scheduler(PredictionType type) {
        return TextToImageModel.defaultScheduler().withPredictionType(type == null ? PredictionType.EPSILON : type);
    }

    static TextToImageModel loadFolder(Path dir, JsonNode index, LoadOptions o) throws IOException {
        for (String c : List.of("unet", "vae", "text_encoder"))
            if (!Files.isDirectory(dir.resolve(c)))
                throw new BadFileException(dir, "a Stable Diffusion folder needs " + c + "/ (model_index.json names it), but it is missing");
        UNet2DCondition unet = null;
        AutoencoderKL vae = null;
        ClipTextModel clip = null;
        try {
            unet = UNet2DCondition.load(dir.resolve("unet"));
            checkFinite(unet, dir.resolve("unet"));
            vae = AutoencoderKL.load(dir.resolve("vae"));
            clip = ClipTextModel.load(dir.resolve("text_encoder"));
            checkFinite(clip, dir.resolve("text_encoder"));
            ClipTokenizer tok = o.tokenizer() != null ? ClipTokenizer.load(o.tokenizer())
                : Files.isDirectory(dir.resolve("tokenizer")) ? ClipTokenizer.load(dir.resolve("tokenizer")) : ClipTokenizer.embedded();
            Path sched = dir.resolve("scheduler/scheduler_config.json");
            DdimScheduler.Config sc = Files.isRegularFile(sched) ? DdimScheduler.Config.read(sched) : scheduler(null);
            if (o.predictionType() != null) sc = sc.withPredictionType(o.predictionType());
            int size = unet.config().sampleSize() * vae.downsampling();
            return new TextToImageModel(unet, vae, "vae", new ClipTextEncoder(tok, clip, o.clipSkip()), sc, size, 1.0);
        } catch (IOException | RuntimeException e) {
            for (AutoCloseable c : new AutoCloseable[] {unet, vae, clip}) closeQuietly(c);
            throw e;
        }
    }

    static TextToImageModel loadSingleFile(Path file, LoadOptions o) throws IOException {
        UNet2DCondition unet = null;
        AutoencoderKL vae = null;
        ClipTextModel clip = null;
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the models
            Map<String, Tensor> all = Checkpoints.read(file);
            family(file, all);
            Path c = o.configs();
            // without a configs folder, each component's configuration is read from its tensors' shapes
            Map<String, long[]> shapes = c == null ? ShapeDetection.shapesOf(all) : null;
            UNet2DCondition.Config uc = c == null ? ShapeDetection.unet(ShapeDetection.under(shapes, ShapeDetection.UNET), file)
                : UNet2DCondition.Config.fromJson(json(c.resolve("unet/config.json")));
            AutoencoderKL.Config vc = c == null ? ShapeDetection.vae(ShapeDetection.under(shapes, ShapeDetection.VAE), file)
                : AutoencoderKL.Config.fromJson(json(c.resolve("vae/config.json")));
            ClipTextModel.Config tc = c == null ? ShapeDetection.clip(ShapeDetection.under(shapes, ShapeDetection.CLIP), file)
                : ClipTextModel.Config.fromJson(json(c.resolve("text_encoder/config.json")));
            unet = UNet2DCondition.fromState(uc, all, file);
            checkFinite(unet, file);
            vae = AutoencoderKL.fromState(vc, all, file);
            clip = ClipTextModel.fromState(tc, all, file);
            checkFinite(clip, file);
            Path tokDir = o.tokenizer() != null ? o.tokenizer() : c != null && Files.isDirectory(c.resolve("tokenizer")) ? c.resolve("tokenizer") : null;
            ClipTokenizer tok = tokDir != null ? ClipTokenizer.load(tokDir) : ClipTokenizer.embedded();
            Path sched = c == null ? null : c.resolve("scheduler/scheduler_config.json");
            DdimScheduler.Config sc = sched != null && Files.isRegularFile(sched) ? DdimScheduler.Config.read(sched) : scheduler(null);
            if (o.predictionType() != null) sc = sc.withPredictionType(o.predictionType());
            int size = uc.sampleSize() * (1 << (vc.blockOutChannels().size() - 1));
            return new TextToImageModel(unet, vae, "vae", new ClipTextEncoder(tok, clip, o.clipSkip()), sc, size, 1.0);
        } catch (IOException | RuntimeException e) {
            for (AutoCloseable c : new AutoCloseable[] {unet, vae, clip}) closeQuietly(c);
            throw e;
        }
    }

    static JsonNode json(Path f) throws IOException {
        if (!Files.isRegularFile(f)) throw new BadFileException(f, "no such config file");
        try {
            return new ObjectMapper().readTree(f.toFile());
        } catch (IOException e) {
            throw new BadFileException(f, "malformed JSON (" + e.getMessage() + ")");
        }
    }

    /** Refuses single files of other families by their keys, naming what they are. */
    private static void family(Path file, Map<String, Tensor> all) throws BadFileException {
        boolean sd1 = false;
        for (String k : all.keySet()) {
            if (k.startsWith("conditioner.embedders.")) throw new BadFileException(file, "an SDXL checkpoint (conditioner.embedders.*); SD 1.x single files are supported");
            if (k.startsWith("cond_stage_model.model."))
                throw new BadFileException(file, "an SD 2.x checkpoint (OpenCLIP text encoder, cond_stage_model.model.*); convert it to a diffusers folder and load that");
            if (k.startsWith("model.diffusion_model.")) sd1 = true;
        }
        if (!sd1) throw new BadFileException(file, "not a Stable Diffusion single file (no model.diffusion_model.* keys)");
    }

    /** fp16 exports sometimes hold NaN or infinity: refused by the first tensor that does. */
    private static void checkFinite(Module m, Path source) throws BadFileException {
        try (Scope s = Scope.open()) {
            for (Map.Entry<String, Tensor> e : m.parameters().entrySet())
                if (!torch.isfinite(e.getValue()).all().item().toBool())
                    throw new BadFileException(source, "weight " + e.getKey() + " holds NaN or infinite values (a broken fp16 export?)");
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        try {
            if (c != null) c.close();
        } catch (Exception ignored) {
            // already failing
        }
    }

    /** Writes the diffusers layout into {@code dir} (which the caller renames into place). */
    static void saveFolder(TextToImageModel m, Path dir) throws IOException {
        UNet2DCondition unet = (UNet2DCondition) m.denoiser;
        AutoencoderKL vae = (AutoencoderKL) m.autoencoder;
        ClipTextEncoder te = (ClipTextEncoder) m.textEncoder;
        unet.save(dir.resolve("unet"));
        vae.save(dir.resolve("vae"));
        te.model().save(dir.resolve("text_encoder"));
        te.tokenizer().save(dir.resolve("tokenizer"));
        ObjectMapper om = new ObjectMapper();
        Files.createDirectories(dir.resolve("scheduler"));
        ObjectNode sc = m.scheduler.toJson();
        sc.put("_class_name", "DDIMScheduler");
        AtomicFiles.writeString(dir.resolve("scheduler/scheduler_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(sc));
        ObjectNode idx = om.createObjectNode();
        idx.put("_class_name", "StableDiffusionPipeline");
        idx.putArray("unet").add("diffusers").add(UNet2DCondition.CLASS_NAME);
        idx.putArray("vae").add("diffusers").add("AutoencoderKL");
        idx.putArray("text_encoder").add("transformers").add(ClipTextEncoder.CLASS_NAME);
        idx.putArray("tokenizer").add("transformers").add("CLIPTokenizer");
        idx.putArray("scheduler").add("diffusers").add("DDIMScheduler");
        idx.putArray("safety_checker").addNull().addNull();
        idx.putArray("feature_extractor").addNull().addNull();
        idx.put("requires_safety_checker", false).put("clip_skip", te.clipSkip());
        AtomicFiles.writeString(dir.resolve("model_index.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(idx));
    }

    /** The original single-file layout of an SD model: every weight under its LDM name, in one safetensors file. */
    static Map<String, Tensor> singleFileState(TextToImageModel m) {
        UNet2DCondition unet = (UNet2DCondition) m.denoiser;
        AutoencoderKL vae = (AutoencoderKL) m.autoencoder;
        ClipTextEncoder te = (ClipTextEncoder) m.textEncoder;
        Map<String, Tensor> out = new LinkedHashMap<>();
        unet.parameters().forEach((k, t) -> out.put("model.diffusion_model." + UNet2DCondition.toLdmKey(k, unet.config()), t));
        int levels = vae.config().blockOutChannels().size();
        vae.stateDict().forEach((k, t) -> {
            String l = AutoencoderKL.toLdmKey(k, levels);
            // LDM keeps the VAE attention projections as 1x1 convolutions
            boolean attnProj = l.contains(".mid.attn_1.") && !l.contains(".norm.") && t.dim() == 2;
            out.put("first_stage_model." + l, attnProj ? t.view(t.size(0), t.size(1), 1, 1) : t);
        });
        te.model().parameters().forEach((k, t) -> out.put(ClipTextModel.SINGLE_FILE_PREFIX + k, t));
        return out;
    }
}
