package org.pixelpost.lora;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;
import org.pixelpost.io.InvalidValueException;

/**
 * Which layers get adapters, by name: the presets the common trainers use, or a regular expression
 * found in the layer's path. Each preset names the layers in every model's own naming (the U-Net's
 * diffusers names, the DiT's PixArt names and CLIP's transformers names), so one list serves all.
 */
public final class LoraTargets {
    private LoraTargets() {}

    /** Preset -> the endings of the layer paths it selects. */
    public static final Map<String, List<String>> PRESETS = Map.of(
        // U-Net: self- and cross-attention projections; DiT: fused qkv, cross-attention q and kv, outputs; CLIP: q, k, v, out
        "attention", List.of(".to_q", ".to_k", ".to_v", ".to_out.0", ".attn.qkv", ".attn.proj", ".cross_attn.q_linear",
            ".cross_attn.kv_linear", ".cross_attn.proj", ".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.out_proj"),
        // the transformer blocks' feed-forward layers
        "ff", List.of(".ff.net.0.proj", ".ff.net.2", ".mlp.fc1", ".mlp.fc2"),
        // the U-Net's projections into and out of each transformer (1x1 convolutions in SD 1.x)
        "proj", List.of(".proj_in", ".proj_out"),
        // the U-Net's residual-block, down- and upsampling convolutions (kohya's conv_dim targets)
        "conv", List.of(".conv1", ".conv2", ".conv_shortcut", ".downsamplers.0.conv", ".upsamplers.0.conv"));

    /** The default: attention projections only, as kohya's and diffusers' LoRA scripts do. */
    public static final List<String> DEFAULT = List.of("attention");

    /** A predicate on layer paths for {@code targets}: preset names, or regular expressions found in the path. */
    public static Predicate<String> of(List<String> targets) {
        if (targets == null || targets.isEmpty()) throw new InvalidValueException("lora_targets", "is empty; name at least one target (presets: "
            + String.join(", ", PRESETS.keySet().stream().sorted().toList()) + ", or a regular expression)");
        List<Predicate<String>> any = new ArrayList<>();
        List<String> flat = new ArrayList<>();
        for (String t : targets) {
            // "attention,ff" names two presets; a comma inside a regular expression stays
            List<String> parts = List.of(t.split(","));
            if (parts.size() > 1 && parts.stream().allMatch(x -> PRESETS.containsKey(x.strip()))) flat.addAll(parts);
            else flat.add(t);
        }
        for (String t : flat) {
            String name = t.strip();
            List<String> endings = PRESETS.get(name);
            if (endings != null) {
                any.add(p -> endings.stream().anyMatch(e -> ("." + p).endsWith(e)));
                continue;
            }
            try {
                Pattern re = Pattern.compile(name);
                any.add(p -> re.matcher(p).find());
            } catch (PatternSyntaxException e) {
                throw new InvalidValueException("lora_targets", "'" + name + "' is neither a preset (" + String.join(", ", PRESETS.keySet().stream().sorted().toList())
                    + ") nor a valid regular expression (" + e.getDescription() + ")");
            }
        }
        return p -> any.stream().anyMatch(f -> f.test(p));
    }
}
