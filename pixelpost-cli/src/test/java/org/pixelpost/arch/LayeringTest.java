package org.pixelpost.arch;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;
import static org.junit.jupiter.api.Assertions.*;

import com.tngtech.archunit.core.domain.Dependency;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.lang.ArchCondition;
import com.tngtech.archunit.lang.ArchRule;
import com.tngtech.archunit.lang.ConditionEvents;
import com.tngtech.archunit.lang.EvaluationResult;
import com.tngtech.archunit.lang.SimpleConditionEvent;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.ArchViolationFixture;

/**
 * The layers, lowest first. A class may use its own layer and the layers below it, never one
 * above: {@code tensor < io < nn < model < schedule < sampling < pipeline < lora < objective < metrics < stats <
 * data < train < eval < demo < cli}.
 */
class LayeringTest {
    static final List<String> LAYERS = List.of("tensor", "io", "nn", "model", "schedule", "sampling", "pipeline", "lora", "objective",
        "metrics", "stats", "data", "train", "eval", "demo", "cli");

    static JavaClasses main;

    @BeforeAll
    static void importMain() {
        // main code only: not test classes, whether from a test-classes folder or a -tests.jar
        ImportOption mainOnly = location -> !location.contains("/test-classes/") && !location.contains("-tests.jar");
        main = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS).withImportOption(mainOnly)
            .importPackages("org.pixelpost");
    }

    /** The layer index of a class's package, or -1 outside the project. */
    static int layer(JavaClass c) {
        String p = c.getPackageName();
        if (!p.startsWith("org.pixelpost.")) return -1; // outside the project (or its root package, which holds no code)
        String top = p.substring("org.pixelpost.".length()).split("\\.")[0];
        int i = LAYERS.indexOf(top);
        if (i < 0) throw new IllegalStateException("package " + p + " is in no layer; add it to LayeringTest.LAYERS");
        return i;
    }

    static final ArchCondition<JavaClass> USE_ONLY_LOWER_LAYERS = new ArchCondition<>("use only their own or lower layers") {
        @Override
        public void check(JavaClass c, ConditionEvents events) {
            int mine = layer(c);
            if (mine < 0) return;
            for (Dependency d : c.getDirectDependenciesFromSelf()) {
                int theirs = layer(d.getTargetClass());
                if (theirs > mine)
                    events.add(SimpleConditionEvent.violated(d, LAYERS.get(mine) + " uses the higher layer " + LAYERS.get(theirs) + ": " + d.getDescription()));
            }
        }
    };

    static final ArchRule LAYERED = classes().that().resideInAPackage("org.pixelpost..").should(USE_ONLY_LOWER_LAYERS);

    @Test
    void everyLayerUsesOnlyTheLayersBelowIt() {
        assertTrue(main.size() > 100, "imported " + main.size() + " classes");
        LAYERED.check(main);
    }

    @Test
    void theRuleCatchesALowerLayerImportingAHigherOne() {
        // a class in the tensor package (test code) that uses the trainer
        JavaClasses bad = new ClassFileImporter().importClasses(ArchViolationFixture.class);
        EvaluationResult r = LAYERED.evaluate(bad);
        assertTrue(r.hasViolation(), "a tensor class using train must be refused");
        assertTrue(r.getFailureReport().toString().contains("tensor uses the higher layer train"), r.getFailureReport().toString());
    }

    @Test
    void noPackageCycles() {
        slices().matching("org.pixelpost.(*)..").should().beFreeOfCycles().check(main);
    }

    @Test
    void onlyThePipelineConvertsBetweenImagesAndModelLatents() {
        noClasses().that().resideOutsideOfPackages("org.pixelpost.pipeline..")
            .should().accessField(TextToImageModel.class, "latentScale")
            .because("TextToImageModel.encodeImages/decodeLatents are the one conversion to and from model latents").check(main);
        noClasses().that().resideOutsideOfPackages("org.pixelpost.pipeline..", "org.pixelpost.model.autoencoder..")
            .should().callMethod(Autoencoder.class, "scalingFactor").orShould().callMethod(Autoencoder.class, "shiftFactor")
            .because("autoencoders apply their own scaling").check(main);
    }

    /** A class a model is made of: a concrete denoiser, autoencoder or text encoder. */
    static boolean concreteModelClass(JavaClass c) {
        return c.getPackageName().startsWith("org.pixelpost.model") && !c.isInterface()
            && !c.getModifiers().contains(com.tngtech.archunit.core.domain.JavaModifier.ABSTRACT)
            && (c.isAssignableTo(org.pixelpost.model.denoiser.Denoiser.class) || c.isAssignableTo(Autoencoder.class)
                || c.isAssignableTo(org.pixelpost.model.text.TextEncoder.class));
    }

    static final ArchCondition<JavaClass> ASK_CAPABILITIES_NOT_TYPES = new ArchCondition<>("ask models for capabilities, not test their concrete classes") {
        @Override
        public void check(JavaClass c, ConditionEvents events) {
            boolean allowed = c.getPackageName().startsWith("org.pixelpost.model") || c.isAssignableTo(org.pixelpost.pipeline.Family.class);
            if (allowed) return;
            for (com.tngtech.archunit.core.domain.InstanceofCheck check : c.getInstanceofChecks()) {
                JavaClass target = check.getRawType();
                if (concreteModelClass(target))
                    events.add(SimpleConditionEvent.violated(check, c.getName() + " tests for the concrete model class " + target.getSimpleName()
                        + " (" + check.getSourceCodeLocation() + "); ask a capability of Denoiser, Autoencoder, TextEncoder or the model's Family"));
            }
        }
    };

    static final ArchRule CAPABILITIES = classes().that().resideInAPackage("org.pixelpost..").should(ASK_CAPABILITIES_NOT_TYPES);

    @Test
    void noClassOutsideTheModelsAndTheirFamiliesTestsAConcreteModelClass() {
        CAPABILITIES.check(main);
        EvaluationResult r = CAPABILITIES.evaluate(new ClassFileImporter().importClasses(ModelTypeTestFixture.class));
        assertTrue(r.hasViolation() && r.getFailureReport().toString().contains("UNet2DCondition"), "the rule catches an instanceof: " + r.getFailureReport());
    }

    @Test
    void aLibraryUserGetsNoWebServer() {
        noClasses().that().resideOutsideOfPackages("org.pixelpost.eval.study..", "org.pixelpost.cli..", "org.pixelpost.demo..")
            .should().dependOnClassesThat().resideInAnyPackage("io.javalin..", "org.sqlite..", "org.postgresql..", "picocli..")
            .check(main);
    }
}
