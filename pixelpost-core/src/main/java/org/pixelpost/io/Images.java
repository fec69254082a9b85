package org.pixelpost.io;

import org.pixelpost.io.check.BadFileException;

import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.Image;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Iterator;
import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.stream.ImageInputStream;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/** Image files to and from {@code [3, H, W]} float tensors in [0, 1]. */
public final class Images {
    private Images() {}

    /**
     * The largest image, in pixels, that is decoded: 64 megapixels by default ({@code
     * -Dpixelpost.maxImagePixels=N}). The size is read from the file's header before anything is
     * decoded, so a small file that claims a huge image (a decompression bomb) is refused without
     * allocating it.
     */
    public static long maxPixels() {
        return Long.getLong("pixelpost.maxImagePixels", 64L << 20);
    }

    /** Reads PNG or JPEG; transparency is composited on white. */
    public static BufferedImage read(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new BadFileException(file, "no such file");
        BufferedImage src;
        try (ImageInputStream in = ImageIO.createImageInputStream(file.toFile())) {
            Iterator<ImageReader> readers = in == null ? null : ImageIO.getImageReaders(in);
            if (readers == null || !readers.hasNext()) throw new BadFileException(file, "not a readable PNG or JPEG image");
            ImageReader reader = readers.next();
            try {
                reader.setInput(in, true, true);
                long w = reader.getWidth(0), h = reader.getHeight(0);
                if (w * h > maxPixels())
                    throw new BadFileException(file, "image of " + w + "x" + h + " pixels is over the limit of " + maxPixels()
                        + " pixels (-Dpixelpost.maxImagePixels)");
                src = reader.read(0);
            } finally {
                reader.dispose();
            }
        } catch (BadFileException e) {
            throw e;
        } catch (IOException | RuntimeException | OutOfMemoryError e) {
            throw new BadFileException(file, "cannot decode image (" + e.getMessage() + ")");
        }
        if (src == null) throw new BadFileException(file, "not a readable PNG or JPEG image");
        BufferedImage rgb = new BufferedImage(src.getWidth(), src.getHeight(), BufferedImage.TYPE_INT_RGB);
        Graphics2D g = rgb.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, rgb.getWidth(), rgb.getHeight());
        g.drawImage(src, 0, 0, null);
        g.dispose();
        return rgb;
    }

    /** Scales the shorter side to {@code size} (area-averaged when shrinking), then crops the centre square. */
    public static BufferedImage resizeCenterCrop(BufferedImage img, int size) {
        int w = img.getWidth(), h = img.getHeight();
        double s = (double) size / Math.min(w, h);
        int nw = Math.max(size, (int) Math.round(w * s)), nh = Math.max(size, (int) Math.round(h * s));
        BufferedImage scaled = img;
        if (nw != w || nh != h) {
            int hint = s < 1 ? Image.SCALE_AREA_AVERAGING : Image.SCALE_SMOOTH;
            scaled = new BufferedImage(nw, nh, BufferedImage.TYPE_INT_RGB);
            Graphics2D g = scaled.createGraphics();
            g.setRenderingHint(RenderingHints.KEY_INTERPOLATION, RenderingHints.VALUE_INTERPOLATION_BICUBIC);
            g.drawImage(img.getScaledInstance(nw, nh, hint), 0, 0, null);
            g.dispose();
        }
        int x = (nw - size) / 2, y = (nh - size) / 2;
        return scaled.getSubimage(x, y, size, size);
    }

    public static Tensor load(Path file, int size) throws IOException {
        return toTensor(resizeCenterCrop(read(file), size));
    }

    public static Tensor toTensor(BufferedImage img) {
        int w = img.getWidth(), h = img.getHeight();
        float[] v = new float[3 * w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int p = img.getRGB(x, y);
                v[y * w + x] = ((p >> 16) & 0xff) / 255f;
                v[w * h + y * w + x] = ((p >> 8) & 0xff) / 255f;
                v[2 * w * h + y * w + x] = (p & 0xff) / 255f;
            }
        return Tensors.fromFloats(v, 3, h, w);
    }

    /** {@code [3, H, W]} in [0, 1] (clamped, rounded) to an image. */
    public static BufferedImage toImage(Tensor chw) {
        long[] s = Tensors.shape(chw);
        if (s.length != 3 || s[0] != 3) throw new IllegalArgumentException("expected [3, H, W], got " + Tensors.describe(chw));
        int h = (int) s[1], w = (int) s[2];
        float[] v = Tensors.toFloats(chw);
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int r = to8(v[y * w + x]), g = to8(v[w * h + y * w + x]), b = to8(v[2 * w * h + y * w + x]);
                img.setRGB(x, y, (r << 16) | (g << 8) | b);
            }
        return img;
    }

    private static int to8(float f) {
        return Math.round(Math.max(0f, Math.min(1f, f)) * 255f);
    }

    public static void writePng(Path file, BufferedImage img) throws IOException {
        AtomicFiles.write(file, tmp -> {
            if (!ImageIO.write(img, "png", tmp.toFile())) throw new IOException("no PNG writer");
        });
    }

    public static void writePng(Path file, Tensor chw) throws IOException {
        writePng(file, toImage(chw));
    }

    /** Tiles equally sized images row by row, {@code columns} wide, with a white gutter. */
    public static BufferedImage grid(List<BufferedImage> images, int columns, int gutter) {
        if (images.isEmpty()) throw new IllegalArgumentException("no images for the grid");
        int w = images.get(0).getWidth(), h = images.get(0).getHeight();
        int cols = Math.min(columns, images.size()), rows = (images.size() + cols - 1) / cols;
        BufferedImage out = new BufferedImage(cols * w + (cols + 1) * gutter, rows * h + (rows + 1) * gutter, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = out.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, out.getWidth(), out.getHeight());
        for (int i = 0; i < images.size(); i++) {
            int c = i % cols, r = i / cols;
            g.drawImage(images.get(i), gutter + c * (w + gutter), gutter + r * (h + gutter), w, h, null);
        }
        g.dispose();
        return out;
    }

    /** Peak signal-to-noise ratio in dB of two images in [0, 1]. */
    public static double psnr(Tensor a, Tensor b) {
        double mse = Tensors.item(a.sub(b).square().mean());
        return mse == 0 ? Double.POSITIVE_INFINITY : 10 * Math.log10(1.0 / mse);
    }

    /** Stacks {@code [3, H, W]} tensors into a batch. */
    public static Tensor batch(List<Tensor> images) {
        return torch.stack(new org.bytedeco.pytorch.TensorVector(images.toArray(new Tensor[0])));
    }
}
