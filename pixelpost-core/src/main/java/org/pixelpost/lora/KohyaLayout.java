package org.pixelpost.lora;

import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.nn.Module;
import org.pixelpost.tensor.Tensors;

/**
 * kohya's sd-scripts layout (also AUTOMATIC1111's and ComfyUI's): {@code lora_unet_<path>} and
 * {@code lora_te_<path>} with the dots of the path as underscores, each with {@code .lora_down.weight},
 * {@code .lora_up.weight} and {@code .alpha}. A U-Net's layers answer to their original (LDM) names
 * too, which older kohya files use.
 */
final class KohyaLayout implements LoraLayout {
    static final String UNET = "lora_unet_", TEXT = "lora_te_";
    private static final Pattern WEIGHT = Pattern.compile("^(lora_[a-z0-9]+_.*)\\.(lora_down|lora_up)\\.weight$");
    private static final Pattern ALPHA = Pattern.compile("^(lora_[a-z0-9]+_.*)\\.alpha$");

    @Override public String name() { return "kohya"; }
    @Override public boolean hasAlpha() { return true; }
    @Override public boolean writable() { return true; }

    @Override
    public Key parse(String key) {
        Matcher m;
        if ((m = WEIGHT.matcher(key)).matches()) return new Key(m.group(1), m.group(2).equals("lora_down") ? Role.DOWN : Role.UP);
        if ((m = ALPHA.matcher(key)).matches()) return new Key(m.group(1), Role.ALPHA);
        return null;
    }

    @Override
    public void names(String prefix, String path, Module root, Map<String, String> names) {
        String key = prefix + "." + path;
        names.put(kohyaName(key), key);
        String original = root instanceof Denoiser d ? d.originalName(path + ".weight") : null;
        if (original != null) names.putIfAbsent(UNET + original.substring(0, original.length() - ".weight".length()).replace('.', '_'), key);
    }

    @Override
    public void write(String key, LoraWeights.Update u, Map<String, Tensor> out) {
        String name = kohyaName(key);
        if (out.containsKey(name + ".lora_down.weight")) throw new IllegalStateException("two layers share the kohya name " + name);
        out.put(name + ".lora_down.weight", u.down());
        out.put(name + ".lora_up.weight", u.up());
        out.put(name + ".alpha", Tensors.scalarTensor(u.alpha()).to(torch.ScalarType.Float));
    }

    /** The kohya module name of a qualified path: the denoiser under {@code lora_unet_}, the text encoder under {@code lora_te_}. */
    static String kohyaName(String key) {
        int dot = key.indexOf('.');
        String prefix = key.substring(0, dot), path = key.substring(dot + 1);
        return (prefix.equals(LoraWeights.TEXT_ENCODER) ? TEXT : UNET) + path.replace('.', '_');
    }
}
