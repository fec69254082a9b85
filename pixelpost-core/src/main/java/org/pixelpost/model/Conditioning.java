package org.pixelpost.model;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.BinaryOperator;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * What a denoiser is conditioned on besides the noisy latent and the timestep, one row per sample:
 * per-token text features {@code tokens [B, T, D]}, their {@code mask [B, T]} (true on real tokens;
 * null where every token counts), a {@code pooled [B, P]} text vector (null where the family has
 * none; SDXL's), and named {@code extras} (PixArt-alpha 1024's {@code resolution} and
 * {@code aspect_ratio}, SDXL's size and crop conditions), each {@code [B, ...]}.
 *
 * <p>Text encoders return it, batches and the encoded-data cache hold it, guidance joins the
 * unconditional and conditional rows of it, and {@code Denoiser.forward(zT, t, cond)} takes it:
 * a family that needs another condition adds an extra, and nothing in between changes.
 */
public record Conditioning(Tensor tokens, Tensor mask, Tensor pooled, Map<String, Tensor> extras) {
    public Conditioning {
        if (tokens == null) throw new IllegalArgumentException("conditioning without token features");
        extras = extras == null ? Map.of() : java.util.Collections.unmodifiableMap(new LinkedHashMap<>(extras));
    }

    /** Token features and their mask only. */
    public static Conditioning of(Tensor tokens, Tensor mask) {
        return new Conditioning(tokens, mask, null, Map.of());
    }

    /** The same with {@code name} set to {@code value} ({@code [B, ...]}). */
    public Conditioning withExtra(String name, Tensor value) {
        Map<String, Tensor> e = new LinkedHashMap<>(extras);
        e.put(name, value);
        return new Conditioning(tokens, mask, pooled, e);
    }

    /** The same with a pooled vector {@code [B, P]}. */
    public Conditioning withPooled(Tensor p) {
        return new Conditioning(tokens, mask, p, extras);
    }

    /** An extra by name, or null. */
    public Tensor extra(String name) {
        return extras.get(name);
    }

    /** Rows. */
    public long size() {
        return tokens.size(0);
    }

    /** Every present tensor through {@code f} (the mask included). */
    public Conditioning map(UnaryOperator<Tensor> f) {
        Map<String, Tensor> e = new LinkedHashMap<>();
        extras.forEach((k, v) -> e.put(k, f.apply(v)));
        return new Conditioning(f.apply(tokens), mask == null ? null : f.apply(mask), pooled == null ? null : f.apply(pooled), e);
    }

    /** Every present tensor through {@code f} but the mask, which is not a feature (dtype casts). */
    public Conditioning mapFeatures(UnaryOperator<Tensor> f) {
        Map<String, Tensor> e = new LinkedHashMap<>();
        extras.forEach((k, v) -> e.put(k, v.is_floating_point() ? f.apply(v) : v));
        return new Conditioning(f.apply(tokens), mask, pooled == null ? null : f.apply(pooled), e);
    }

    /** On {@code like}'s device. */
    public Conditioning on(Tensor like) {
        return map(t -> Tensors.follow(t, like));
    }

    /** Rows {@code index} ({@code [K]}, long). */
    public Conditioning rows(Tensor index) {
        return map(t -> t.index_select(0, index));
    }

    /** Rows {@code start .. start + length}. */
    public Conditioning narrow(long start, long length) {
        return map(t -> t.narrow(0, start, length));
    }

    /** This condition's rows, then {@code other}'s (token lengths padded to the longer with zeros, false in the mask). */
    public Conditioning concat(Conditioning other) {
        return zip(other, (a, b) -> {
            long t = Math.max(a.dim() > 1 ? a.size(1) : 0, b.dim() > 1 ? b.size(1) : 0);
            return torch.cat(new TensorVector(padTokens(a, t), padTokens(b, t)), 0);
        });
    }

    private Conditioning zip(Conditioning o, BinaryOperator<Tensor> f) {
        if ((mask == null) != (o.mask == null) || (pooled == null) != (o.pooled == null) || !extras.keySet().equals(o.extras.keySet()))
            throw new IllegalArgumentException("conditionings of different kinds cannot be joined");
        Map<String, Tensor> e = new LinkedHashMap<>();
        extras.forEach((k, v) -> e.put(k, f.apply(v, o.extras.get(k))));
        return new Conditioning(f.apply(tokens, o.tokens), mask == null ? null : f.apply(mask, o.mask),
            pooled == null ? null : f.apply(pooled, o.pooled), e);
    }

    /** Pads dimension 1 of a token tensor ({@code [B, T, ...]}) with zeros (false for a mask) up to {@code t}; others pass. */
    static Tensor padTokens(Tensor x, long t) {
        if (x.dim() < 2 || x.size(1) >= t) return x;
        long[] shape = Tensors.shape(x);
        shape[1] = t - x.size(1);
        Tensor pad = Tensors.follow(torch.zeros(shape, new org.bytedeco.pytorch.TensorOptions(x.scalar_type())), x);
        return torch.cat(new TensorVector(x, pad), 1);
    }

    /** The tensors by the names a cache file stores them under ({@code prefix + "tokens"}, {@code "mask"}, {@code "pooled"}, {@code "extra." + name}). */
    public Map<String, Tensor> named(String prefix) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        out.put(prefix + "tokens", tokens);
        if (mask != null) out.put(prefix + "mask", mask);
        if (pooled != null) out.put(prefix + "pooled", pooled);
        extras.forEach((k, v) -> out.put(prefix + "extra." + k, v));
        return out;
    }

    /** The inverse of {@link #named}: null where {@code prefix + "tokens"} is absent. */
    public static Conditioning fromNamed(Map<String, Tensor> all, String prefix) {
        Tensor tokens = all.get(prefix + "tokens");
        if (tokens == null) return null;
        Map<String, Tensor> e = new LinkedHashMap<>();
        all.forEach((k, v) -> {
            if (k.startsWith(prefix + "extra.")) e.put(k.substring((prefix + "extra.").length()), v);
        });
        return new Conditioning(tokens, all.get(prefix + "mask"), all.get(prefix + "pooled"), e);
    }
}
