package org.pixelpost.lora;

import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.pixelpost.nn.Module;

/**
 * diffusers' layouts before PEFT: {@code <path>.lora.down.weight} / {@code .lora_linear_layer.up.weight},
 * and the attention processors' {@code <block>.processor.to_q_lora.down.weight} (to_q, to_k, to_v,
 * to_out; CLIP's q_proj, k_proj, v_proj, out_proj under the text encoder). Read only. The layers
 * answer to the same diffusers paths as PEFT's.
 */
final class DiffusersOldLayout implements LoraLayout {
    private static final Pattern OLD = Pattern.compile("^(.*)\\.(?:lora|lora_linear_layer)\\.(down|up)\\.weight$");
    private static final Pattern PROCESSOR = Pattern.compile("^(.*?)(?:\\.processor)?\\.(to_q|to_k|to_v|to_out)_lora\\.(down|up)\\.weight$");

    @Override public String name() { return "diffusers (old)"; }

    @Override
    public Key parse(String key) {
        Matcher m;
        if ((m = PROCESSOR.matcher(key)).matches()) {
            boolean te = key.startsWith(LoraWeights.TEXT_ENCODER + ".");
            String layer = switch (m.group(2)) {
                case "to_q" -> te ? "q_proj" : "to_q";
                case "to_k" -> te ? "k_proj" : "to_k";
                case "to_v" -> te ? "v_proj" : "to_v";
                default -> te ? "out_proj" : "to_out.0";
            };
            return new Key(m.group(1) + "." + layer, m.group(3).equals("down") ? Role.DOWN : Role.UP);
        }
        if ((m = OLD.matcher(key)).matches()) return new Key(m.group(1), m.group(2).equals("down") ? Role.DOWN : Role.UP);
        return null;
    }

    @Override
    public void names(String prefix, String path, Module root, Map<String, String> names) {
        // the diffusers paths, which PEFT's layout names already
    }
}
