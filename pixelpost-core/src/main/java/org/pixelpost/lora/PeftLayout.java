package org.pixelpost.lora;

import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.nn.Module;
import org.pixelpost.tensor.Tensors;

/**
 * PEFT's layout, which diffusers writes and reads: {@code <path>.lora_A.weight} and
 * {@code .lora_B.weight} (an adapter name may sit between), the path with or without the
 * component prefix or PEFT's {@code base_model.model.}; no alpha per layer (diffusers reads
 * alpha = rank, so a write folds {@code alpha / rank} into B; an {@code adapter_config.json} beside
 * the file gives {@code lora_alpha} when reading).
 */
final class PeftLayout implements LoraLayout {
    private static final Pattern WEIGHT = Pattern.compile("^(.*)\\.lora_([AB])(?:\\.[A-Za-z0-9_-]+)?\\.weight$");

    @Override public String name() { return "peft"; }
    @Override public boolean writable() { return true; }

    @Override
    public Key parse(String key) {
        Matcher m = WEIGHT.matcher(key);
        return m.matches() ? new Key(m.group(1), m.group(2).equals("A") ? Role.DOWN : Role.UP) : null;
    }

    @Override
    public void names(String prefix, String path, Module root, Map<String, String> names) {
        String key = prefix + "." + path;
        names.put(key, key);
        names.putIfAbsent(path, key);
        if (!prefix.equals(LoraWeights.TEXT_ENCODER)) names.putIfAbsent("base_model.model." + path, key);
    }

    @Override
    public void write(String key, LoraWeights.Update u, Map<String, Tensor> out) {
        out.put(key + ".lora_A.weight", u.down());
        out.put(key + ".lora_B.weight", u.scale() == 1 ? u.up() : u.up().mul(Tensors.s(u.scale())));
    }

    @Override
    public double writtenAlpha(LoraWeights.Update u) {
        return u.rank();
    }
}
