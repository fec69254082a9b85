package org.pixelpost.model.text;

import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Stable Diffusion's text conditioning: CLIP's tokenizer and text transformer. Each prompt is
 * padded to the context length (77), and every position takes part (SD attends to the padding as
 * it was trained to). {@code clipSkip} 1 uses the last layer; 2 the one before it, then the final
 * LayerNorm (AUTOMATIC1111's and kohya's "clip skip 2"; diffusers' {@code clip_skip=1}).
 */
public final class ClipTextEncoder implements TextEncoder {
    public static final String CLASS_NAME = "CLIPTextModel";

    private final ClipTokenizer tokenizer;
    private final ClipTextModel model;
    private final int clipSkip;
    private final Set<String> warned = ConcurrentHashMap.newKeySet();

    public ClipTextEncoder(ClipTokenizer tokenizer, ClipTextModel model, int clipSkip) {
        if (clipSkip < 1 || clipSkip > model.config().numLayers())
            throw new org.pixelpost.io.check.InvalidValueException("--clip-skip", clipSkip + " is out of range; must be in [1, " + model.config().numLayers() + "]");
        this.tokenizer = tokenizer;
        this.model = model;
        this.clipSkip = clipSkip;
        model.freeze();
    }

    public ClipTextModel model() { return model; }
    @Override public org.pixelpost.nn.Module module() { return model; }
    public ClipTokenizer tokenizer() { return tokenizer; }
    public int clipSkip() { return clipSkip; }

    @Override public String name() { return "clip-text-" + model.config().hiddenSize() + (clipSkip > 1 ? "-skip" + clipSkip : ""); }
    @Override public String className() { return CLASS_NAME; }
    @Override public int dim() { return model.config().hiddenSize(); }
    @Override public int maxTokens() { return tokenizer.contextLength(); }

    /** Token ids {@code [B, 77]} of the prompts; a prompt that was cut is said once. */
    public Tensor tokenIds(List<String> captions) {
        int t = tokenizer.contextLength();
        float[] ids = new float[captions.size() * t];
        for (int i = 0; i < captions.size(); i++) {
            ClipTokenizer.Tokens tok = tokenizer.encode(captions.get(i));
            if (tok.truncated() && warned.add(captions.get(i)))
                System.err.println("warning: prompt longer than CLIP's " + (t - 2) + " tokens, truncated: \""
                    + (captions.get(i).length() > 80 ? captions.get(i).substring(0, 77) + "..." : captions.get(i)) + "\"");
            for (int j = 0; j < t; j++) ids[i * t + j] = tok.ids()[j];
        }
        return Tensors.fromFloats(ids, captions.size(), t).to(org.bytedeco.pytorch.global.torch.ScalarType.Long);
    }

    /** The per-token features of token ids {@code [B, T]}: the last layer, or the one {@code clipSkip - 1} before it, final-normed. */
    public Tensor features(Tensor ids) {
        ClipTextModel.Output o = model.forward(ids, null);
        return clipSkip == 1 ? o.last() : model.finalLayerNorm(o.hidden().get(o.hidden().size() - clipSkip));
    }

    @Override
    public org.pixelpost.model.Conditioning encode(List<String> captions) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor tokens = features(tokenIds(captions));
            Tensor mask = org.bytedeco.pytorch.global.torch.ones(captions.size(), tokenizer.contextLength()).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
            return org.pixelpost.model.Conditioning.of(s.keep(tokens.to(org.bytedeco.pytorch.global.torch.ScalarType.Float).contiguous()), s.keep(mask));
        }
    }

    @Override
    public void close() {
        model.close();
    }
}
