"""Where each dataset comes from: pinned archives, or instructions for account-gated sets.

Pins (verified when `xbench data fetch` downloads a file):

* CUB-200-2011 (`CUB_200_2011.tgz`, 1 150 585 339 bytes) and its segmentation
  masks (`segmentations.tgz`, 39 272 883 bytes), served by CaltechDATA. The
  sha256 values are those TensorFlow Datasets records for the archives of
  exactly these sizes (`tensorflow_datasets/url_checksums/caltech_birds2011.txt`,
  then served from the authors' Google Drive). The CUB md5
  `97eceeb196236b17998738112f37df78` is the one torchvision-style loaders pin for
  the CaltechDATA file; it is kept to diagnose a sha256 mismatch (see `fetch`).
  The sha256 pins were not re-checked against a fresh CaltechDATA download.
* Oxford-IIIT Pet (`images.tar.gz`, `annotations.tar.gz`): sha256 and sizes from
  TensorFlow Datasets' `oxford_iiit_pet/checksums.tsv` (same URLs); the md5s are
  torchvision's `OxfordIIITPet` pins.
* FunnyBirds (`FunnyBirds.zip`, ~1.6 GB, TU Darmstadt): **no published sha256 is
  known**. `xbench data fetch funnybirds` downloads it, prints the computed
  sha256 and keeps the file as `downloads/FunnyBirds.zip.unverified` until the
  user confirms the hash with `--sha256 HEX`.

The base address of every archive can be replaced by a mirror (`--mirror URL` or
`$XBENCH_MIRROR`): the file is then fetched from `<mirror>/<file name>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Archive:
    """One downloadable archive."""

    file: str                    # file name (also its name under a mirror)
    urls: tuple[str, ...]        # official addresses, tried in order
    sha256: str | None           # pinned sha256, or None when no trusted value is known
    size: int | None = None      # bytes, when known
    md5: str | None = None       # published md5 (diagnostics only)
    into: str = ""               # folder under the data root to extract into
    provides: tuple[str, ...] = ()  # paths under the data root present once extracted
    note: str = ""               # provenance of the pin


@dataclass(frozen=True)
class Source:
    dataset: str
    folder: str                  # the dataset's folder under the data root
    homepage: str
    archives: tuple[Archive, ...] = ()
    manual: tuple[str, ...] = field(default_factory=tuple)  # steps when nothing can be fetched
    where: str = ""              # one clause: where to download it by hand (account-gated sets)

    @property
    def fetchable(self) -> bool:
        return bool(self.archives)


SOURCES: dict[str, Source] = {
    "cub": Source(
        dataset="cub", folder="CUB_200_2011", homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        archives=(
            Archive(
                file="CUB_200_2011.tgz",
                urls=("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",),
                sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
                size=1150585339, md5="97eceeb196236b17998738112f37df78",
                provides=("CUB_200_2011/images.txt",),
                note="sha256: TensorFlow Datasets url_checksums/caltech_birds2011.txt; md5: torchvision-style loaders",
            ),
            Archive(
                file="segmentations.tgz",
                urls=("https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1",),
                sha256="dc77f6cffea0cbe2e41d4201115c8f29a6320ecb04fffd2444f51b8066e4b84f",
                size=39272883,
                provides=("segmentations",),
                note="sha256: TensorFlow Datasets url_checksums/caltech_birds2011.txt",
            ),
        ),
    ),
    "pets": Source(
        dataset="pets", folder="oxford-iiit-pet", homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
        archives=(
            Archive(
                file="images.tar.gz",
                urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz",
                      "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"),
                sha256="67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d",
                size=791918971, md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                into="oxford-iiit-pet", provides=("oxford-iiit-pet/images",),
                note="sha256: TensorFlow Datasets oxford_iiit_pet/checksums.tsv; md5: torchvision OxfordIIITPet",
            ),
            Archive(
                file="annotations.tar.gz",
                urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz",
                      "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz"),
                sha256="52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91",
                size=19173078, md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                into="oxford-iiit-pet", provides=("oxford-iiit-pet/annotations",),
                note="sha256: TensorFlow Datasets oxford_iiit_pet/checksums.tsv; md5: torchvision OxfordIIITPet",
            ),
        ),
    ),
    "funnybirds": Source(
        dataset="funnybirds", folder="FunnyBirds", homepage="https://github.com/visinf/funnybirds-framework",
        archives=(
            Archive(
                file="FunnyBirds.zip",
                urls=("https://download.visinf.tu-darmstadt.de/data/funnybirds/FunnyBirds.zip",),
                sha256=None,
                provides=("FunnyBirds/classes.json",),
                note="no published sha256; confirm the printed hash with --sha256",
            ),
        ),
    ),
    "cars": Source(
        dataset="cars", folder="stanford_cars", homepage="https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
        where=("download the images from Kaggle (https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset) "
               "and the devkit and test labels linked from https://github.com/pytorch/vision/issues/7545"),
        manual=(
            "Stanford Cars has no working official download any more (the Stanford address is gone).",
            "1. Images: download the Kaggle dataset https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset "
            "(a Kaggle account is needed) and unpack it so that the JPEGs are in {folder}/cars_train/ and "
            "{folder}/cars_test/ (a doubled cars_train/cars_train/ folder from the Kaggle zip is accepted too).",
            "2. Devkit: download https://github.com/pytorch/vision/files/11644847/car_devkit.tgz and unpack it into "
            "{folder}/ so that {folder}/devkit/cars_meta.mat and {folder}/devkit/cars_train_annos.mat exist.",
            "3. Test labels: place cars_test_annos_withlabels.mat in {folder}/ (where to get it: "
            "https://github.com/pytorch/vision/issues/7545#issuecomment-1631441616).",
            "This is the layout torchvision's StanfordCars uses; then run `xbench data check cars{root_opt}`.",
        ),
    ),
    "rsna": Source(
        dataset="rsna", folder="rsna-pneumonia-detection-challenge",
        homepage="https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge",
        where=("download the Kaggle competition data with an account (`kaggle competitions download -c "
               "rsna-pneumonia-detection-challenge`) and unzip it there"),
        manual=(
            "RSNA Pneumonia Detection is Kaggle competition data: sign in to Kaggle and accept the competition rules at "
            "https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge/rules.",
            "1. Download it with the Kaggle CLI: `kaggle competitions download -c rsna-pneumonia-detection-challenge` "
            "(or the 'Download All' button on the competition's Data page), about 3.9 GB.",
            "2. Unzip rsna-pneumonia-detection-challenge.zip into {folder}/ so that "
            "{folder}/stage_2_train_labels.csv and {folder}/stage_2_train_images/<patientId>.dcm exist.",
            "Then run `xbench data check rsna{root_opt}`.",
        ),
    ),
}


def source(name: str) -> Source | None:
    return SOURCES.get(name)


def how_to_get(name: str, data_root_opt: str = "") -> str:
    """One clause telling the user how to put dataset `name` in place."""
    src = SOURCES.get(name)
    if src is None:
        return "put the dataset in place (see docs/datasets.md)"
    if src.fetchable:
        return f"run `xbench data fetch {name}{data_root_opt}` to download it"
    return f"{src.where}; `xbench data fetch {name}{data_root_opt}` prints the steps"


__all__ = ["Archive", "Source", "SOURCES", "source", "how_to_get"]
