package org.pixelpost.nn.blocks;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Module;

/**
 * The residual block of the SD autoencoder and U-Net, named as diffusers names it: GroupNorm, SiLU,
 * 3x3 conv, twice, with the projected time embedding added between the two where there is one,
 * and a 1x1 {@code conv_shortcut} where the width changes.
 */
public final class ResnetBlock2D extends Module {
    private final GroupNorm norm1, norm2;
    private final Conv2d conv1, conv2, shortcut;
    private final Linear timeEmbProj;

    /**
     * @param temb width of the time embedding, or 0 for a block without one (the autoencoder's)
     */
    public ResnetBlock2D(int in, int out, int temb, int groups, double eps) {
        norm1 = add("norm1", new GroupNorm(groups, in, eps));
        conv1 = add("conv1", Conv2d.k3(in, out));
        timeEmbProj = temb > 0 ? add("time_emb_proj", new Linear(temb, out)) : null;
        norm2 = add("norm2", new GroupNorm(groups, out, eps));
        conv2 = add("conv2", Conv2d.k3(out, out));
        shortcut = in != out ? add("conv_shortcut", Conv2d.k1(in, out, true)) : null;
    }

    public Tensor forward(Tensor x) {
        return forward(x, null);
    }

    /** @param emb the time embedding {@code [B, temb]}, or null */
    public Tensor forward(Tensor x, Tensor emb) {
        Tensor h = conv1.forward(torch.silu(norm1.forward(x)));                          // [B, out, H, W]
        if (timeEmbProj != null && emb != null)
            h = h.add(timeEmbProj.forward(torch.silu(emb)).unsqueeze(2).unsqueeze(3));   // + [B, out, 1, 1]
        h = conv2.forward(torch.silu(norm2.forward(h)));                                 // [B, out, H, W]
        return (shortcut == null ? x : shortcut.forward(x)).add(h);
    }
}
