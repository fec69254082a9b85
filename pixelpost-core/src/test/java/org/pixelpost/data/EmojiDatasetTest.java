package org.pixelpost.data;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.Images;

@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class EmojiDatasetTest {
    @Test
    void buildsCaptionedDisjointSplitsFromTheRealPackage(@TempDir Path dir) throws Exception {
        EmojiDataset.Summary s = EmojiDataset.build(TestData.emojiTarball(), dir, 0);
        assertTrue(s.images() > 3700, "skin-tone variants included: " + s.images());
        ImageCaptionSet train = ImageCaptionSet.load(dir.resolve("train")), val = ImageCaptionSet.load(dir.resolve("val")),
            sft = ImageCaptionSet.load(dir.resolve("sft")), eval = ImageCaptionSet.load(dir.resolve("eval"));
        assertEquals(s.train(), train.items().size());
        Set<Path> trainFiles = new HashSet<>();
        for (ImageCaptionSet.Item it : train.items()) {
            assertFalse(it.caption().isBlank(), it.file().toString());
            assertTrue(trainFiles.add(it.file().normalize()), "no duplicates");
        }
        for (ImageCaptionSet.Item it : val.items()) assertFalse(trainFiles.contains(it.file().normalize()), "train and validation are disjoint");
        for (ImageCaptionSet.Item it : sft.items()) assertTrue(trainFiles.contains(it.file().normalize()), "the SFT subset is drawn from train");
        for (ImageCaptionSet.Item it : eval.items()) assertFalse(trainFiles.contains(it.file().normalize()), "evaluation prompts are held out");
        assertEquals(32, eval.items().size());
        assertEquals(32, Files.readAllLines(dir.resolve("eval/prompts.txt")).size());
        assertTrue(s.sft() > 300 && s.sft() < s.train() / 2, "curated subset: " + s.sft());
        // captions from emoji.json, with skin tones for the variants
        List<String> caps = train.items().stream().map(ImageCaptionSet.Item::caption).toList();
        assertTrue(caps.contains("grinning face"), "names give captions");
        assertTrue(caps.stream().anyMatch(c -> c.startsWith("thumbs up sign: ") && c.endsWith("skin tone")), "skin-tone variants");
        // the images really decode, at 64x64
        for (int i = 0; i < train.items().size(); i += 97) assertEquals(64, Images.read(train.items().get(i).file()).getWidth());
        JsonNode m = new ObjectMapper().readTree(dir.resolve("manifest.json").toFile());
        assertEquals(EmojiDataset.PACKAGE, m.get("package").asText());
        assertTrue(m.get("sft_rule").asText().contains("Laplacian variance"));
    }

    @Test
    void refusesATarballThatIsNotThePinnedPackage(@TempDir Path dir) throws Exception {
        Path fake = dir.resolve("fake.tgz");
        Files.write(fake, new byte[] {0x1f, (byte) 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0});
        BadFileException e = assertThrows(BadFileException.class, () -> EmojiDataset.build(fake, dir.resolve("out"), 0));
        assertTrue(e.getMessage().contains("not " + EmojiDataset.PACKAGE), e.getMessage());
        assertFalse(Files.exists(dir.resolve("out/manifest.json")));
    }

    @Test
    void splitsDependOnTheCodeAlone() {
        assertEquals(EmojiDataset.bucket("1F600"), EmojiDataset.bucket("1F600"));
        int val = 0;
        for (int c = 0x1F300; c < 0x1F700; c++) if (EmojiDataset.bucket(Integer.toHexString(c).toUpperCase()) < 5) val++;
        assertTrue(val > 20 && val < 100, "about 5% of 1024 codes: " + val);
    }
}
