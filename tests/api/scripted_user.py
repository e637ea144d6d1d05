"""A scripted Japanese user who answers Hera's questions (shared by API and journey tests)."""

from __future__ import annotations

SCRIPT: tuple[str, ...] = (
    "こんにちは！32歳の女性です。独身です。",
    "東京に住んでいます。年収は500万円くらいです。",
    "性格は社交的で、好奇心が強いほうです。几帳面だとよく言われます。",
    "理想の相手の顔は、優しい目をした笑顔の素敵な人です。",
    "理想の相手の名前は健太さんで、穏やかで優しい性格、背が高くて黒髪の人がいいです。",
    "子どもは男の子と女の子が欲しいです。名前は太郎と花子にしたいです。",
    "よろしくお願いします。",
    "ありがとうございます。",
)

# The family talk that reaches an agreed plan with the offline brain (three turns: a place,
# what to do there, yes).
FAMILY_AGREEING: tuple[str, ...] = (
    "沖縄に行きたいな！",
    "海で泳いだり、水族館に行ったりしたい！",
    "いいね、そうしよう！",
)
