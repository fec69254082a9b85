package org.pixelpost.pipeline;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.tensor.Tensors;

/**
 * The configurations of an original (LDM-layout) Stable Diffusion checkpoint read from its tensors'
 * shapes, as ComfyUI's model detection reads them: block widths, layers per block, transformer depth,
 * projection kind, cross-attention width, latent channels, text width, depth and context length.
 * What shapes do not hold is taken from the family the shapes identify (SD 1.x: 8 attention heads per
 * level, OpenAI CLIP's quick GELU, the VAE's 32 norm groups and scaling factor 0.18215), and refused
 * by name where the shapes identify no family that fixes it.
 */
public final class ShapeDetection {
    private ShapeDetection() {}

    /** The prefixes of an SD 1.x single file's three components. */
    public static final String UNET = "model.diffusion_model.", VAE = "first_stage_model.", CLIP = "cond_stage_model.transformer.";

    /** Each tensor's shape, from a safetensors header (nothing loaded) or from loaded tensors. */
    public static Map<String, long[]> shapes(Path file) throws IOException {
        Map<String, long[]> out = new LinkedHashMap<>();
        if (file.getFileName().toString().endsWith(".safetensors")) {
            try (SafeTensors st = SafeTensors.open(file)) {
                st.entries().forEach((k, e) -> out.put(k, e.shape()));
            }
            return out;
        }
        try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) {
            org.pixelpost.io.tensorfile.Checkpoints.read(file).forEach((k, t) -> out.put(k, Tensors.shape(t)));
        }
        return out;
    }

    public static Map<String, long[]> shapesOf(Map<String, Tensor> tensors) {
        Map<String, long[]> out = new LinkedHashMap<>();
        tensors.forEach((k, t) -> out.put(k, Tensors.shape(t)));
        return out;
    }

    /** The keys under {@code prefix}, the prefix removed. */
    public static Map<String, long[]> under(Map<String, long[]> shapes, String prefix) {
        Map<String, long[]> out = new LinkedHashMap<>();
        shapes.forEach((k, v) -> {
            if (k.startsWith(prefix)) out.put(k.substring(prefix.length()), v);
        });
        return out;
    }

    /** The number of elements of the tensors under {@code prefix} (buffers such as CLIP's position ids excluded). */
    public static long count(Map<String, long[]> shapes, String prefix) {
        long n = 0;
        for (Map.Entry<String, long[]> e : shapes.entrySet()) {
            if (!e.getKey().startsWith(prefix) || e.getKey().endsWith("position_ids")) continue;
            long c = 1;
            for (long d : e.getValue()) c *= d;
            n += c;
        }
        return n;
    }

    /** An LDM U-Net ({@code input_blocks.*}, {@code middle_block.*}, {@code output_blocks.*}, prefix removed). */
    public static UNet2DCondition.Config unet(Map<String, long[]> s, Path source) throws BadFileException {
        long[] convIn = need(s, "input_blocks.0.0.weight", source, "the U-Net's conv_in"), convOut = need(s, "out.2.weight", source, "the U-Net's conv_out");
        if (s.containsKey("label_emb.0.0.weight")) throw new BadFileException(source, "a U-Net with class or size conditioning (label_emb: SDXL-style); SD 1.x / 2.x U-Nets have none");
        TreeSet<Integer> ops = indices(s, "^input_blocks\\.(\\d+)\\.0\\.op\\.weight$");
        int inputs = indices(s, "^input_blocks\\.(\\d+)\\..*$").last();
        int layers = ops.isEmpty() ? inputs : ops.first() - 1, per = layers + 1, levels = ops.size() + 1;
        if (layers < 1) throw new BadFileException(source, "the U-Net's input blocks do not form levels of residual blocks");
        for (int i = 0; i < ops.size(); i++)
            if (ops.toArray(new Integer[0])[i] != (i + 1) * per)
                throw new BadFileException(source, "the U-Net's downsamplers sit at input blocks " + ops + ", not every " + per + " blocks");
        if (inputs != levels * per - 1) throw new BadFileException(source, "the U-Net has " + inputs + " input blocks; " + levels + " levels of " + layers + " would have " + (levels * per - 1));
        List<Integer> widths = new ArrayList<>();
        List<String> down = new ArrayList<>(), up = new ArrayList<>();
        int cross = -1, depth = -1;
        Boolean linear = null;
        for (int l = 0; l < levels; l++) {
            int first = 1 + l * per;
            widths.add((int) need(s, "input_blocks." + first + ".0.out_layers.3.weight", source, "level " + l + "'s first residual block")[0]);
            boolean attn = s.containsKey("input_blocks." + first + ".1.proj_in.weight");
            down.add(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
            if (attn) {
                long[] projIn = s.get("input_blocks." + first + ".1.proj_in.weight");
                linear = projIn.length == 2;
                cross = (int) need(s, "input_blocks." + first + ".1.transformer_blocks.0.attn2.to_k.weight", source, "level " + l + "'s cross-attention")[1];
                depth = indices(s, "^input_blocks\\." + first + "\\.1\\.transformer_blocks\\.(\\d+)\\..*$").size();
            }
        }
        for (int b = 0; b < levels; b++) up.add(s.containsKey("output_blocks." + (b * per) + ".1.proj_in.weight") ? "CrossAttnUpBlock2D" : "UpBlock2D");
        if (cross < 0 && s.containsKey("middle_block.1.transformer_blocks.0.attn2.to_k.weight")) {
            cross = (int) s.get("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1];
            linear = s.get("middle_block.1.proj_in.weight").length == 2;
            depth = indices(s, "^middle_block\\.1\\.transformer_blocks\\.(\\d+)\\..*$").size();
        }
        if (cross < 0) throw new BadFileException(source, "the U-Net has no cross-attention (no transformer_blocks.0.attn2): not a text-conditioned SD U-Net");
        // the number of heads is a reshape, not a shape: the family fixes it
        List<Integer> heads = new ArrayList<>();
        if (cross == 768 && !linear) for (int i = 0; i < levels; i++) heads.add(8);          // SD 1.x: 8 heads per level
        else if (cross == 1024 && linear) for (int w : widths) heads.add(w / 64);           // SD 2.x: 64 channels per head
        else throw new BadFileException(source, "attention heads cannot be read from the weights' shapes, and a U-Net with cross-attention width "
            + cross + " and " + (linear ? "linear" : "convolutional") + " projections is neither SD 1.x's (768, convolutional: 8 heads) nor SD 2.x's "
            + "(1024, linear: 64 channels per head); pass --configs with a diffusers folder whose unet/config.json describes it");
        for (int w : widths) if (w % 32 != 0)
            throw new BadFileException(source, "block width " + w + " is not divisible by 32, the norm groups SD's U-Nets use; pass --configs with its unet/config.json");
        return new UNet2DCondition.Config((int) convIn[1], (int) convOut[0], cross == 1024 ? 96 : 64, widths, layers, down, up, heads, cross, 32, 1e-5,
            linear, false, true, 0, 1, depth);
    }

    /** An LDM VAE ({@code encoder.down.*}, {@code decoder.up.*}, {@code quant_conv.*}, prefix removed). */
    public static AutoencoderKL.Config vae(Map<String, long[]> s, Path source) throws BadFileException {
        long[] convIn = need(s, "encoder.conv_in.weight", source, "the VAE's encoder.conv_in"), convOut = need(s, "decoder.conv_out.weight", source, "the VAE's decoder.conv_out");
        TreeSet<Integer> levels = indices(s, "^encoder\\.down\\.(\\d+)\\..*$");
        if (levels.isEmpty()) throw new BadFileException(source, "the VAE has no encoder.down.* levels");
        int layers = indices(s, "^encoder\\.down\\.0\\.block\\.(\\d+)\\..*$").size();
        List<Integer> widths = new ArrayList<>();
        for (int l : levels) widths.add((int) need(s, "encoder.down." + l + ".block.0.conv2.weight", source, "VAE level " + l)[0]);
        int latent = (int) need(s, "post_quant_conv.weight", source, "the VAE's post_quant_conv")[0];
        if (latent != 4)
            throw new BadFileException(source, "a VAE with " + latent + " latent channels: its scaling_factor is not in the weights (SD's 4-channel VAE uses 0.18215); "
                + "pass --configs with a diffusers folder whose vae/config.json has it");
        for (int w : widths) if (w % 32 != 0)
            throw new BadFileException(source, "VAE width " + w + " is not divisible by 32, the norm groups SD's VAE uses; pass --configs with its vae/config.json");
        boolean attention = s.keySet().stream().anyMatch(k -> k.startsWith("encoder.mid.attn_1."));
        return new AutoencoderKL.Config((int) convIn[1], (int) convOut[0], widths, layers, latent, 32, 0.18215, 0.0, attention);
    }

    /** transformers' CLIP text model ({@code text_model.*}, as SD 1.x single files hold it under {@code cond_stage_model.transformer.}). */
    public static ClipTextModel.Config clip(Map<String, long[]> s, Path source) throws BadFileException {
        long[] tokens = need(s, "text_model.embeddings.token_embedding.weight", source, "CLIP's token embedding");
        long[] positions = need(s, "text_model.embeddings.position_embedding.weight", source, "CLIP's position embedding");
        int layers = indices(s, "^text_model\\.encoder\\.layers\\.(\\d+)\\..*$").size();
        if (layers == 0) throw new BadFileException(source, "CLIP's text model has no encoder layers");
        long hidden = tokens[1], ff = need(s, "text_model.encoder.layers.0.mlp.fc1.weight", source, "CLIP's first feed-forward")[0];
        // CLIP's text towers keep 64 channels per head (ViT-L/14: 12 heads of 768); the count is not a shape
        if (hidden % 64 != 0)
            throw new BadFileException(source, "CLIP width " + hidden + " is not a multiple of 64 channels per head, so its attention heads cannot be "
                + "read from the shapes; pass --configs with a diffusers folder whose text_encoder/config.json has num_attention_heads");
        return new ClipTextModel.Config((int) tokens[0], (int) hidden, (int) ff, layers, (int) (hidden / 64), (int) positions[0], "quick_gelu", 1e-5, 2);
    }

    /** One component of a model on disk: its role, class, configuration, and parameter count (from the weights' shapes). */
    public record Component(String role, String className, com.fasterxml.jackson.databind.JsonNode config, long parameters) {}

    /**
     * The components of a single file (an SD 1.x checkpoint, or one U-Net, VAE or CLIP text model in
     * its original names) or of a component folder ({@code unet/}, {@code vae/}, {@code text_encoder/}
     * and the like: {@code config.json} and its weights), without loading a weight.
     */
    public static List<Component> components(Path path) throws IOException {
        if (java.nio.file.Files.isDirectory(path)) return List.of(folder(path));
        if (!java.nio.file.Files.isRegularFile(path)) throw new BadFileException(path, "no such file or folder");
        Map<String, long[]> s = shapes(path);
        List<Component> out = new ArrayList<>();
        if (s.keySet().stream().anyMatch(k -> k.startsWith(UNET))) {
            out.add(unetComponent(under(s, UNET), path));
            if (s.keySet().stream().anyMatch(k -> k.startsWith(VAE))) out.add(vaeComponent(under(s, VAE), path));
            if (s.keySet().stream().anyMatch(k -> k.startsWith(CLIP))) out.add(clipComponent(under(s, CLIP), path));
            return out;
        }
        if (org.pixelpost.model.denoiser.DiT.isOriginalPixArt(s.keySet())) return List.of(pixArtComponent(s, path));
        if (s.containsKey("input_blocks.0.0.weight")) return List.of(unetComponent(s, path));
        if (s.containsKey("encoder.down.0.block.0.conv1.weight")) return List.of(vaeComponent(s, path));
        if (s.containsKey("text_model.embeddings.token_embedding.weight")) return List.of(clipComponent(s, path));
        if (s.keySet().stream().anyMatch(k -> k.startsWith("conditioner.embedders.")))
            throw new BadFileException(path, "an SDXL checkpoint (conditioner.embedders.*); SD 1.x single files are supported");
        if (s.containsKey("conv_in.weight") || s.containsKey("encoder.down_blocks.0.resnets.0.conv1.weight"))
            throw new BadFileException(path, "weights in diffusers' names, which need their config.json: pass the folder that holds both");
        throw new BadFileException(path, "neither an SD single file nor an original-layout U-Net, VAE or CLIP text model (keys like "
            + s.keySet().stream().limit(3).toList() + ")");
    }

    /** An original PixArt-alpha checkpoint: its parameters (positions and the learned empty caption are not), its configuration where the head count is known. */
    private static Component pixArtComponent(Map<String, long[]> s, Path source) throws IOException {
        Map<String, long[]> params = new LinkedHashMap<>(s);
        List.of("pos_embed", "y_embedder.y_embedding").forEach(params::remove);
        Integer heads = PixArt.headsInHeader(source);
        com.fasterxml.jackson.databind.node.ObjectNode cfg;
        try {
            org.pixelpost.model.denoiser.DiT.Config c = org.pixelpost.model.denoiser.DiT.originalConfig(s, source, heads);
            cfg = org.pixelpost.io.ConfigJson.write(c);
            return checked(new Component("denoiser", "PixArt-alpha (original)", cfg, count(params, "")), c.parameterCount(), source);
        } catch (BadFileException e) {
            if (!e.getMessage().contains("head count")) throw e;
            // the count stands without the head count, which only the attention's split needs
            cfg = org.pixelpost.io.ConfigJson.MAPPER.createObjectNode().put("hidden_size", s.get("x_embedder.proj.weight")[0]).put("num_heads", "unknown");
            return new Component("denoiser", "PixArt-alpha (original)", cfg, count(params, ""));
        }
    }

    private static Component unetComponent(Map<String, long[]> s, Path source) throws BadFileException {
        UNet2DCondition.Config c = unet(s, source);
        return checked(new Component("denoiser", UNet2DCondition.CLASS_NAME, c.toJson(), count(s, "")), c.parameterCount(), source);
    }

    private static Component vaeComponent(Map<String, long[]> s, Path source) throws BadFileException {
        return new Component("autoencoder", "AutoencoderKL", vae(s, source).toJson(), count(s, ""));
    }

    private static Component clipComponent(Map<String, long[]> s, Path source) throws BadFileException {
        ClipTextModel.Config c = clip(s, source);
        return checked(new Component("text_encoder", "CLIPTextModel", c.toJson(), count(s, "")), c.parameterCount(), source);
    }

    /** The configuration read from the shapes must build exactly the file's parameters. */
    private static Component checked(Component c, long built, Path source) throws BadFileException {
        if (built != c.parameters())
            throw new BadFileException(source, "the " + c.className() + " configuration read from the shapes builds " + built
                + " parameters, but the file holds " + c.parameters() + ": an architecture variant PixelPost does not build");
        return c;
    }

    private static final Map<String, String> ROLES = Map.of(UNet2DCondition.CLASS_NAME, "denoiser", "AutoencoderKL", "autoencoder",
        "CLIPTextModel", "text_encoder", "PixArtTransformer2DModel", "denoiser", "T5EncoderModel", "text_encoder",
        "Transformer2DModel", "denoiser");

    /** A diffusers or transformers component folder: {@code config.json} and its weights (sharded or not). */
    private static Component folder(Path dir) throws IOException {
        Path cfg = dir.resolve("config.json");
        if (!java.nio.file.Files.isRegularFile(cfg))
            throw new BadFileException(dir, "neither a model folder (model_index.json) nor a component folder (config.json)");
        com.fasterxml.jackson.databind.JsonNode j = StableDiffusion.json(cfg);
        String cls = j.path("_class_name").asText(j.path("architectures").path(0).asText(""));
        if (cls.isEmpty()) throw new BadFileException(cfg, "names no class (_class_name or architectures)");
        if (!ROLES.containsKey(cls)) throw new BadFileException(cfg, "class " + cls + " is not one PixelPost builds; known: " + new TreeSet<>(ROLES.keySet()));
        TreeSet<Path> weights = new TreeSet<>();
        for (String index : List.of("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json", "pytorch_model.bin.index.json", "diffusion_pytorch_model.bin.index.json")) {
            Path f = dir.resolve(index);
            if (java.nio.file.Files.isRegularFile(f)) StableDiffusion.json(f).path("weight_map").forEach(shard -> weights.add(dir.resolve(shard.asText())));
        }
        if (weights.isEmpty())
            weights.add(org.pixelpost.io.tensorfile.Checkpoints.find(dir, "diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin", "pytorch_model.bin"));
        long n = 0;
        for (Path w : weights) n += count(shapes(w), "");
        Component c = new Component(ROLES.get(cls), cls, j, n);
        if (cls.equals(UNet2DCondition.CLASS_NAME)) return checked(c, UNet2DCondition.Config.fromJson(j).parameterCount(), dir);
        if (cls.equals("CLIPTextModel")) return checked(c, ClipTextModel.Config.fromJson(j).parameterCount(), dir);
        return c;
    }

    private static long[] need(Map<String, long[]> s, String key, Path source, String what) throws BadFileException {
        long[] v = s.get(key);
        if (v == null) throw new BadFileException(source, "no " + key + " (" + what + "): the configuration cannot be read from the shapes");
        return v;
    }

    private static TreeSet<Integer> indices(Map<String, long[]> s, String regex) {
        Pattern p = Pattern.compile(regex);
        TreeSet<Integer> out = new TreeSet<>();
        for (String k : s.keySet()) {
            Matcher m = p.matcher(k);
            if (m.matches()) out.add(Integer.parseInt(m.group(1)));
        }
        return out;
    }
}
