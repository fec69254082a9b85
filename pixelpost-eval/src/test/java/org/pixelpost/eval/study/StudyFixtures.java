package org.pixelpost.eval.study;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;

/** Sample folders as {@code pixelpost sample} writes them, made of small solid-colour PNGs. */
final class StudyFixtures {
    private StudyFixtures() {}

    static Path samples(Path dir, List<String> prompts, int seeds, int rgb) throws Exception {
        Files.createDirectories(dir);
        StringBuilder images = new StringBuilder();
        for (int p = 0; p < prompts.size(); p++)
            for (int s = 0; s < seeds; s++) {
                String f = String.format("%03d-%d.png", p, s);
                BufferedImage img = new BufferedImage(8, 8, BufferedImage.TYPE_INT_RGB);
                for (int y = 0; y < 8; y++) for (int x = 0; x < 8; x++) img.setRGB(x, y, rgb + p * 3 + s);
                ImageIO.write(img, "png", dir.resolve(f).toFile());
                if (images.length() > 0) images.append(',');
                images.append("{\"file\":\"").append(f).append("\",\"prompt\":").append(StudyStore.JSON.writeValueAsString(prompts.get(p)))
                    .append(",\"seed\":").append(s).append('}');
            }
        Files.writeString(dir.resolve("settings.json"), "{\"images\":[" + images + "]}");
        return dir;
    }
}
